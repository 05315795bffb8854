//! The persistent settings file: one JSON file per app holding the user's choices.
//!
//! ```json
//! {
//!   "schema_version": 1,
//!   "sync": true,
//!   "crash_reports": true,
//!   "usage": true,
//!   "anonymous_id": "6f1c0b1e-...",
//!   "salt": "...",
//!   "consent": { "decided": true, "granted": true, "at": "2026-11-20T10:00:00Z", "via": "cli" },
//!   "notice_shown_at": null
//! }
//! ```
//!
//! Writes are atomic (a temporary file in the same directory, fsync, rename) and happen under
//! an exclusive lock on the sibling file `settings.json.lock`, so two processes updating at
//! once lose neither update. A file that cannot be parsed (or is larger than 1 MiB) is moved
//! aside to `settings.json.corrupt-<unix time>` and replaced by defaults that record a
//! "no": a mistyped `"sync": "false"` must never turn into a "yes". The user decides again
//! with `enable`. A FIFO, a link or anything else that is not a regular file at the path is
//! refused (nothing is sent) and left alone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::fsx;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The version of the settings layout this build writes.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
/// assert_eq!(s.get("schema_version"), Some(consentry::SCHEMA_VERSION.into()));
/// ```
pub const SCHEMA_VERSION: u32 = 1;

/// The keys users may change with [`Settings::update`] and `telemetry settings key=value`.
///
/// ```
/// assert_eq!(
///     consentry::SETTABLE_KEYS,
///     ["sync", "crash_reports", "usage", "review", "minidumps"]
/// );
/// ```
pub const SETTABLE_KEYS: &[&str] = &["sync", "crash_reports", "usage", "review", "minidumps"];

/// How long an update waits for another process holding the settings lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// How consent was given or refused.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let mut s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
/// s.update([("sync", true)]).unwrap();
/// assert_eq!(s.consent().via, Some(consentry::ConsentSource::Api));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ConsentSource {
    /// The user answered [`ask`](crate::ask)'s prompt.
    Prompt,
    /// The user ran the `telemetry` command (`enable`, `disable`, `settings sync=...`).
    Cli,
    /// The app called [`Settings::update`] or [`enable`](crate::enable)/[`disable`](crate::disable).
    Api,
    /// The app's opt-out default applied after the first-run notice.
    Default,
    /// Recorded by consentry: the settings file could not be read, so the answer is "no"
    /// until the user decides again.
    Recovered,
}

impl ConsentSource {
    /// A phrase for messages: "at the prompt", "with 'myapp telemetry enable'", ...
    pub(crate) fn describe(self, command: &str, granted: bool) -> String {
        match self {
            ConsentSource::Prompt => "at the prompt".to_owned(),
            ConsentSource::Cli => {
                let verb = if granted { "enable" } else { "disable" };
                format!("with '{command} {verb}'")
            }
            ConsentSource::Api => "by the app".to_owned(),
            ConsentSource::Default => "by the app's opt-out default after the notice".to_owned(),
            ConsentSource::Recovered => format!(
                "automatically: the settings file could not be read, so nothing is sent until you run '{command} enable'"
            ),
        }
    }
}

/// The recorded consent decision.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let mut s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
/// assert!(!s.consent().decided);
/// s.update([("sync", false)]).unwrap();
/// assert!(s.consent().decided && !s.consent().granted);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Consent {
    /// Whether the user (or the opt-out default) has decided.
    #[serde(default)]
    pub decided: bool,
    /// Whether the decision was yes. Meaningless while undecided.
    #[serde(default)]
    pub granted: bool,
    /// When it was decided (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// How it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ConsentSource>,
    /// Consent was given at some point (so the anonymous id may have been sent).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) was_granted: bool,
}

impl Consent {
    pub(crate) fn record(granted: bool, via: ConsentSource) -> Consent {
        Consent {
            decided: true,
            granted,
            at: Some(now_rfc3339()),
            via: Some(via),
            was_granted: granted,
        }
    }

    /// Records a decision, keeping the memory that consent was once given.
    pub(crate) fn decide(&mut self, granted: bool, via: ConsentSource) {
        // A "yes" repeated keeps the moment it was first given: reports captured under it
        // are not from before consent.
        if granted && self.decided && self.granted && self.via != Some(ConsentSource::Default) {
            return;
        }
        let was_granted = self.decided_yes_once() || granted;
        *self = Consent::record(granted, via);
        self.was_granted = was_granted;
    }

    /// A "yes" given anew (to a new notice version, or from local to on): the moment moves
    /// to now, so nothing captured before it is uploaded by it.
    pub(crate) fn renew(&mut self, via: ConsentSource) {
        self.decided = false;
        self.decide(true, via);
    }

    /// Whether consent was given at some point, so the anonymous id may have been sent. A
    /// later "no" does not undo that; an id never used needs no deletion request.
    pub(crate) fn decided_yes_once(&self) -> bool {
        (self.decided && self.granted) || self.was_granted
    }

    /// The date part (`YYYY-MM-DD`) of `at`.
    pub(crate) fn date(&self) -> Option<&str> {
        self.at.as_deref().and_then(|at| at.get(..10))
    }
}

/// What a kind of reporting does: nothing, record on this machine only, or send.
///
/// In the settings file a mode is `false`/`"off"`, `"local"`, or `true`/`"on"`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let mut s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
/// s.update([("crash_reports", "local")]).unwrap();
/// assert_eq!(s.crash_mode(), consentry::Mode::Local);
/// assert_eq!(s.get("crash_reports"), Some(serde_json::json!("local")));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Nothing is recorded or sent.
    Off,
    /// Reports are built and scrubbed exactly as for sending, kept in the outbox and the
    /// audit log marked "kept locally", and never sent (no socket is opened).
    Local,
    /// Reports are sent (when consent is given).
    #[default]
    On,
}

impl Mode {
    /// Whether this kind is recorded at all.
    pub fn is_off(self) -> bool {
        self == Mode::Off
    }

    /// The word users type and see.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Local => "local",
            Mode::On => "on",
        }
    }

    /// Parses `off`/`local`/`on` and the boolean spellings (`true`, `0`, `no`, ...).
    pub(crate) fn parse(value: &Value) -> Option<Mode> {
        match value {
            Value::Bool(true) => Some(Mode::On),
            Value::Bool(false) => Some(Mode::Off),
            Value::String(s) if s.trim().eq_ignore_ascii_case("local") => Some(Mode::Local),
            Value::String(s) if crate::env::is_true_like(s) => Some(Mode::On),
            Value::String(s) if crate::env::is_false_like(s) => Some(Mode::Off),
            _ => None,
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Booleans stay booleans, so files written by earlier versions read the same.
        match self {
            Mode::Off => s.serialize_bool(false),
            Mode::On => s.serialize_bool(true),
            Mode::Local => s.serialize_str("local"),
        }
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let v = Value::deserialize(d)?;
        // A string that spells a boolean is accepted as on the command line; anything else
        // (a number, "perhaps") is a type error, which makes the whole file corrupt: "no".
        Mode::parse(&v).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected true, false, \"off\", \"local\" or \"on\", found {v}"
            ))
        })
    }
}

/// The contents of `settings.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SettingsData {
    #[serde(default = "schema_version")]
    pub(crate) schema_version: u32,
    #[serde(default = "yes")]
    pub(crate) sync: bool,
    #[serde(default)]
    pub(crate) crash_reports: Mode,
    #[serde(default)]
    pub(crate) usage: Mode,
    #[serde(default = "Uuid::new_v4")]
    pub(crate) anonymous_id: Uuid,
    #[serde(default = "new_salt")]
    pub(crate) salt: String,
    #[serde(default)]
    pub(crate) consent: Consent,
    #[serde(default)]
    pub(crate) notice_shown_at: Option<String>,
    /// Crash reports wait for the user's review (`telemetry send`), never sent automatically.
    #[serde(default)]
    pub(crate) review: bool,
    /// A full minidump may be attached to native crash reports (when the app has them on):
    /// a yes of its own, apart from the yes to crash reports.
    #[serde(default)]
    pub(crate) minidumps: bool,
    /// The version of the notice under which consent was given or the notice shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) notice_version: Option<String>,
    /// When the consent prompt last went unanswered: it is not shown again for a day, so an
    /// unattended terminal does not wait at every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) prompt_unanswered_at: Option<String>,
    /// Where an unreadable settings file was moved, when the current "no" came from that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) corrupt_copy: Option<String>,
    /// Anonymous ids retired by `disable`, whose deletion request is still to be sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pending_deletion: Vec<Uuid>,
    /// Keys this version does not know: kept as they are on every rewrite.
    #[serde(flatten)]
    pub(crate) extra: Map<String, Value>,
}

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

fn yes() -> bool {
    true
}

/// A random per-install salt for hashing: 244 random bits from two v4 UUIDs, as hex.
fn new_salt() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

impl Default for SettingsData {
    fn default() -> Self {
        SettingsData {
            schema_version: SCHEMA_VERSION,
            sync: true,
            crash_reports: Mode::On,
            usage: Mode::On,
            anonymous_id: Uuid::new_v4(),
            salt: new_salt(),
            consent: Consent::default(),
            notice_shown_at: None,
            review: false,
            minidumps: false,
            notice_version: None,
            prompt_unanswered_at: None,
            corrupt_copy: None,
            pending_deletion: Vec::new(),
            extra: Map::new(),
        }
    }
}

impl SettingsData {
    /// Fresh defaults that keep the keys this version does not know.
    fn reset_keeping_extra(&self) -> SettingsData {
        SettingsData {
            extra: self.extra.clone(),
            ..SettingsData::default()
        }
    }

    /// Retires the anonymous id (usage consent withdrawn): if it may have been sent, it is
    /// owed a deletion request; a new random id replaces it, and a new salt the old one, so
    /// `Prop::hashed` values sent later cannot be linked to those sent under the old id.
    /// Returns the retired id if one is owed.
    pub(crate) fn retire_id(&mut self) -> Option<Uuid> {
        let used = self.consent.decided_yes_once();
        let old = self.anonymous_id;
        self.anonymous_id = Uuid::new_v4();
        self.salt = new_salt();
        (used && !self.pending_deletion.contains(&old)).then(|| {
            self.pending_deletion.push(old);
            old
        })
    }

    /// Defaults after an unreadable file was moved to `moved_to`: a recorded "no", so the
    /// next run sends nothing whatever the policy, until the user decides again.
    fn after_corruption(moved_to: &Path) -> SettingsData {
        SettingsData {
            sync: false,
            consent: Consent::record(false, ConsentSource::Recovered),
            corrupt_copy: Some(moved_to.display().to_string()),
            ..SettingsData::default()
        }
    }
}

/// What happened when a corrupt settings file was found; see [`Settings::recovered`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("settings.json");
/// std::fs::write(&path, b"\xff\xfe").unwrap();
/// let recovery = consentry::Settings::load_from(&path).unwrap().recovered().cloned().unwrap();
/// assert!(recovery.problem.starts_with("not valid UTF-8"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Where the corrupt file was moved.
    pub moved_to: PathBuf,
    /// What was wrong with it (with line and column for JSON errors).
    pub problem: String,
}

/// An error reading or changing the settings.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let mut s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
/// let err = s.update([("sync", "perhaps")]).unwrap_err();
/// assert_eq!(err.to_string(), "invalid value \"perhaps\" for 'sync': expected a boolean (true/false, 1/0, yes/no, on/off)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("read", "create", "write", "lock", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The OS has no config directory and none was configured.
    #[error("no config directory: set {env_var} or Config::config_dir")]
    NoConfigDir {
        /// The environment variable that would name it.
        env_var: String,
    },
    /// Another process held the settings lock for too long.
    #[error("timed out after {waited:?} waiting for the lock on {path}")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// A key that does not exist.
    #[error("unknown setting '{key}' (settable: {})", SETTABLE_KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// A key that exists but is managed by consentry.
    #[error("setting '{key}' is read-only ({hint})")]
    ReadOnlyKey {
        /// The key given.
        key: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A value of the wrong type.
    #[error("invalid value {value} for '{key}': expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given, as JSON.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The app's [`Config`](crate::Config) is not valid (e.g. its name is not a plain lower-case word).
    #[error("invalid configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// An argument that is not `key=value`.
    #[error("invalid argument '{arg}': expected key=value (e.g. sync=false)")]
    NotAnAssignment {
        /// The argument given.
        arg: String,
    },
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SettingsError + 'a {
    move |source| SettingsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The persistent settings of one app.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("settings.json");
/// use consentry::Settings;
/// let mut settings = Settings::load_from(&path).unwrap();
/// assert_eq!(settings.get("sync"), Some(serde_json::json!(true)));
/// settings.update([("sync", false)]).unwrap(); // Ultralytics: settings.update({'sync': False})
/// assert!(!Settings::load_from(&path).unwrap().sync());
/// ```
#[derive(Debug, Clone)]
pub struct Settings {
    path: PathBuf,
    data: SettingsData,
    recovered: Option<Recovery>,
    /// Where the app keeps what waits to be sent (known when loaded for an app's config):
    /// a "no" written here deletes it, as `disable` does.
    waiting: Option<Waiting>,
}

/// The directories of what waits to be sent, per kind.
#[derive(Debug, Clone, Default)]
struct Waiting {
    crash: Vec<PathBuf>,
    usage: Vec<PathBuf>,
    /// Native crash records (and their minidumps).
    native: Option<PathBuf>,
}

impl Settings {
    /// Loads the settings of the app `config` describes, creating the file with fresh
    /// defaults (a new random anonymous id and salt, consent undecided) when it does not
    /// exist. A corrupt file is moved aside and replaced (see [`Settings::recovered`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path());
    /// let settings = consentry::Settings::load(&config).unwrap();
    /// assert!(settings.path().ends_with("settings.json"));
    /// ```
    pub fn load(config: &crate::Config) -> Result<Settings, SettingsError> {
        Settings::load_for(config, &crate::paths::Paths::of(config))
    }

    /// [`Settings::load`] with the paths already resolved.
    pub(crate) fn load_for(
        config: &crate::Config,
        paths: &crate::paths::Paths,
    ) -> Result<Settings, SettingsError> {
        crate::config::validate_app_name(&config.app_name)?;
        let path = paths
            .settings_file()
            .ok_or_else(|| SettingsError::NoConfigDir {
                env_var: format!("{}_CONFIG_DIR", config.env_prefix()),
            })?;
        let mut settings = Settings::load_from(&path)?;
        settings.waiting = Some(Waiting {
            crash: [paths.outbox_dir(), paths.kept_dir()]
                .into_iter()
                .flatten()
                .collect(),
            usage: paths.usage_dir().into_iter().collect(),
            native: paths.native_dir(),
        });
        Ok(settings)
    }

    /// Loads (or creates) the settings file at `path`.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let settings = consentry::Settings::load_from(dir.path().join("settings.json")).unwrap();
    /// assert!(!settings.consent().decided);
    /// ```
    pub fn load_from(path: impl AsRef<Path>) -> Result<Settings, SettingsError> {
        let path = path.as_ref();
        // The common case needs no lock: the file exists, is complete, and renames are atomic.
        if let Ok(bytes) = read_settings_file(path)
            && let Ok((data, true)) = parse(&bytes)
        {
            return Ok(Settings {
                path: path.to_owned(),
                data,
                recovered: None,
                waiting: None,
            });
        }
        let dir = fsx::parent_dir(path);
        create_private_dir(dir)?;
        with_lock(path, || {
            // Another process may have created or repaired the file while we waited.
            match read_settings_file(path) {
                Ok(bytes) => match parse(&bytes) {
                    Ok((data, complete)) => {
                        if !complete {
                            write_atomically(path, &data)?;
                        }
                        Ok(Settings {
                            path: path.to_owned(),
                            data,
                            recovered: None,
                            waiting: None,
                        })
                    }
                    Err(problem) => Settings::recover(path, problem),
                },
                Err(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                    Settings::recover(path, e.to_string())
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let data = SettingsData::default();
                    write_atomically(path, &data)?;
                    Ok(Settings {
                        path: path.to_owned(),
                        data,
                        recovered: None,
                        waiting: None,
                    })
                }
                Err(e) => Err(io_err("read", path)(e)),
            }
        })
    }

    /// Moves an unreadable file aside and writes defaults that record a "no". Called with
    /// the lock held.
    fn recover(path: &Path, problem: String) -> Result<Settings, SettingsError> {
        let moved_to = move_aside(path)?;
        let data = SettingsData::after_corruption(&moved_to);
        write_atomically(path, &data)?;
        Ok(Settings {
            path: path.to_owned(),
            data,
            recovered: Some(Recovery { moved_to, problem }),
            waiting: None,
        })
    }

    /// The path of the settings file.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert!(s.path().ends_with("s.json"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a change to the file could be written: a temp file can be created beside it.
    /// A directory that cannot be written means a later "no" could not be recorded, so
    /// `init` treats it as unusable settings (nothing is sent).
    pub(crate) fn check_writable(&self) -> Result<(), SettingsError> {
        let dir = fsx::parent_dir(&self.path);
        tempfile::Builder::new()
            .prefix(".settings.json.")
            .suffix(".probe")
            .tempfile_in(dir)
            .map(drop)
            .map_err(io_err("write to", dir))
    }

    /// Set when the file was corrupt and was replaced by defaults while loading.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("settings.json");
    /// std::fs::write(&path, "{\"sync\": tru").unwrap();
    /// let settings = consentry::Settings::load_from(&path).unwrap();
    /// let recovery = settings.recovered().unwrap();
    /// assert!(recovery.problem.contains("line 1 column"));
    /// assert!(recovery.moved_to.exists());
    /// ```
    pub fn recovered(&self) -> Option<&Recovery> {
        self.recovered.as_ref()
    }

    /// The value of one setting as JSON, as Ultralytics' `settings['sync']`. The salt is
    /// never returned.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let settings = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert_eq!(settings.get("usage"), Some(serde_json::json!(true)));
    /// assert_eq!(settings.get("nope"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<Value> {
        match self.to_json() {
            Value::Object(mut map) => map.remove(key),
            _ => None,
        }
    }

    /// The master switch.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert!(s.sync());
    /// ```
    pub fn sync(&self) -> bool {
        self.data.sync
    }

    /// Whether crash and error reports are allowed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert!(s.crash_reports());
    /// ```
    pub fn crash_reports(&self) -> bool {
        !self.data.crash_reports.is_off()
    }

    /// What crash and error reports do: off, local, on.
    pub fn crash_mode(&self) -> Mode {
        self.data.crash_reports
    }

    /// What usage pings do: off, local, on.
    pub fn usage_mode(&self) -> Mode {
        self.data.usage
    }

    /// Whether usage pings are allowed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert!(s.usage());
    /// ```
    pub fn usage(&self) -> bool {
        !self.data.usage.is_off()
    }

    /// The random anonymous id sent with reports.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert_eq!(s.anonymous_id().get_version_num(), 4);
    /// ```
    pub fn anonymous_id(&self) -> Uuid {
        self.data.anonymous_id
    }

    /// The recorded consent.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert!(!s.consent().decided);
    /// ```
    pub fn consent(&self) -> &Consent {
        &self.data.consent
    }

    /// When the opt-out notice was shown (RFC 3339), if it was.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let s = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert_eq!(s.notice_shown_at(), None);
    /// ```
    pub fn notice_shown_at(&self) -> Option<&str> {
        self.data.notice_shown_at.as_deref()
    }

    pub(crate) fn data(&self) -> &SettingsData {
        &self.data
    }

    /// The settings as JSON, with the salt hidden (it is only ever used on this machine).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let settings = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// assert_eq!(settings.to_json()["salt"], "<hidden>");
    /// ```
    pub fn to_json(&self) -> Value {
        let mut value = serde_json::to_value(&self.data).unwrap_or(Value::Null);
        if let Some(salt) = value.get_mut("salt") {
            *salt = Value::from("<hidden>");
        }
        value
    }

    /// Changes settings, as Ultralytics' `settings.update({'sync': False})`. Every change is
    /// checked before the file is touched; an unknown key, a read-only key or a bad value is
    /// an error and nothing is written. Setting `sync` records the consent decision.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut settings = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// settings.update([("usage", "false")]).unwrap();
    /// assert!(!settings.usage());
    /// assert!(settings.update([("colour", true)]).is_err());
    /// ```
    pub fn update<K, V>(
        &mut self,
        changes: impl IntoIterator<Item = (K, V)>,
    ) -> Result<(), SettingsError>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        self.update_via(changes, ConsentSource::Api)
    }

    /// [`Settings::update`], recording `via` as the source of a consent change.
    pub(crate) fn update_via<K, V>(
        &mut self,
        changes: impl IntoIterator<Item = (K, V)>,
        via: ConsentSource,
    ) -> Result<(), SettingsError>
    where
        K: AsRef<str>,
        V: Into<Value>,
    {
        let changes = changes
            .into_iter()
            .map(|(key, value)| validate_change(key.as_ref(), &value.into()))
            .collect::<Result<Vec<_>, _>>()?;
        let withdraws = changes
            .iter()
            .any(|(key, mode)| !matches!(*key, "review" | "minidumps") && mode.is_off());
        let minidumps_no = changes
            .iter()
            .any(|(key, mode)| *key == "minidumps" && mode.is_off());
        let apply = |data: &mut SettingsData| {
            let usage_before = data.sync && !data.usage.is_off();
            for (key, value) in &changes {
                match *key {
                    "sync" => {
                        let on = !value.is_off();
                        data.sync = on;
                        data.consent.decide(on, via);
                    }
                    "crash_reports" => data.crash_reports = *value,
                    "usage" => data.usage = *value,
                    "review" => data.review = !value.is_off(),
                    "minidumps" => data.minidumps = !value.is_off(),
                    _ => {}
                }
            }
            // A "no" to usage here has the effects of `disable`: the id that may have been
            // sent is retired (its deletion request is sent by the app's next start) and
            // replaced. Waiting reports are deleted by the next process that reads this "no"
            // (see `gate`), and at once by the CLI.
            if usage_before && (!data.sync || data.usage.is_off()) {
                data.retire_id();
            }
        };
        let result = if withdraws {
            self.withdraw(apply)?;
            // The same effects as `disable`: what waits for a kind now off is deleted.
            let no = (
                !self.data.sync || self.data.crash_reports.is_off(),
                !self.data.sync || self.data.usage.is_off(),
            );
            if let Some(w) = &self.waiting {
                let dirs = w
                    .crash
                    .iter()
                    .filter(|_| no.0)
                    .chain(w.usage.iter().filter(|_| no.1));
                for dir in dirs {
                    for (file, _) in fsx::regular_files(dir) {
                        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                        if name.is_some_and(|n| n.ends_with(".envelope") || n.ends_with(".usage")) {
                            let _ = fsx::remove(&file);
                        }
                    }
                }
            }
            Ok(())
        } else {
            self.modify(apply)
        };
        // A "no" to minidumps: the dumps waiting are deleted now, the reports stay.
        if result.is_ok()
            && minidumps_no
            && let Some(w) = &self.waiting
        {
            crate::minidump::withdraw(&w.crash, w.native.as_deref());
        }
        result
    }

    /// Back to defaults: a new anonymous id and salt, consent undecided, every switch on,
    /// the notice not shown. Keys this version does not know are kept.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut settings = consentry::Settings::load_from(dir.path().join("s.json")).unwrap();
    /// let before = settings.anonymous_id();
    /// settings.reset().unwrap();
    /// assert_ne!(settings.anonymous_id(), before);
    /// ```
    pub fn reset(&mut self) -> Result<(), SettingsError> {
        self.modify(|data| *data = data.reset_keeping_extra())
    }

    /// Reads the file again under the lock, applies `change`, writes it atomically and keeps
    /// the result. Re-reading inside the lock is what keeps a concurrent update from another
    /// process.
    pub(crate) fn modify(
        &mut self,
        change: impl FnOnce(&mut SettingsData),
    ) -> Result<(), SettingsError> {
        let path = self.path.clone();
        create_private_dir(fsx::parent_dir(&path))?;
        let data = with_lock(&path, || {
            let mut data = match read_settings_file(&path) {
                // A file that does not parse (emptied by a "no" on a full disk, mistyped) is
                // a "no": this object's older copy must not write a stale "yes" back.
                Ok(bytes) => parse(&bytes).map(|(data, _)| data).unwrap_or_else(|_| {
                    let mut no = self.data.clone();
                    no.sync = false;
                    no.consent = Consent::record(false, ConsentSource::Recovered);
                    no
                }),
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.data.clone(),
                Err(e) => return Err(io_err("read", &path)(e)),
            };
            test_delay();
            change(&mut data);
            write_atomically(&path, &data)?;
            Ok(data)
        })?;
        self.data = data;
        Ok(())
    }
}

impl Settings {
    /// [`Settings::modify`] for a change that withdraws consent, which must hold even when
    /// the disk is full: if the atomic write fails, the file is overwritten in place (no new
    /// blocks), and if even that fails it is emptied, which the next read takes as corrupt,
    /// and so as "no". `Err` only when the path cannot be touched at all.
    pub(crate) fn withdraw(
        &mut self,
        change: impl Fn(&mut SettingsData),
    ) -> Result<(), SettingsError> {
        let Err(first) = self.modify(&change) else {
            return Ok(());
        };
        let mut data = read_settings_file(&self.path)
            .ok()
            .and_then(|b| parse(&b).ok())
            .map_or_else(|| self.data.clone(), |(d, _)| d);
        change(&mut data);
        if fsx::overwrite_in_place(&self.path, &settings_bytes(&data)).is_ok() {
            self.data = data;
            return Ok(());
        }
        match fsx::truncate(&self.path) {
            Ok(()) => {
                crate::diag::warn_once("settings-emptied", || {
                    format!(
                        "cannot write the settings ({first}); {} was emptied instead, which counts as \"no\" until you decide again",
                        self.path.display()
                    )
                });
                change(&mut self.data);
                Ok(())
            }
            Err(_) => Err(first),
        }
    }
}

/// A test hook: widen the window between reading and writing so that tests of concurrent
/// updates would lose an update if the lock were missing. Compiled into debug builds only.
fn test_delay() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("CONSENTRY_TEST_SETTINGS_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Checks one change: the key is settable and the value is a boolean (or a string that
/// spells one, as on the command line: `true`, `False`, `1`, `off`, ...).
pub(crate) fn validate_change(
    key: &str,
    value: &Value,
) -> Result<(&'static str, Mode), SettingsError> {
    let Some(key) = SETTABLE_KEYS.iter().copied().find(|k| *k == key) else {
        return Err(match key {
            "anonymous_id" | "salt" => SettingsError::ReadOnlyKey {
                key: key.to_owned(),
                hint: "use 'settings reset' for a new one",
            },
            "consent" | "notice_shown_at" | "notice_version" => SettingsError::ReadOnlyKey {
                key: key.to_owned(),
                hint: "use 'enable' or 'disable'",
            },
            "schema_version" | "pending_deletion" => SettingsError::ReadOnlyKey {
                key: key.to_owned(),
                hint: "managed by consentry",
            },
            _ => SettingsError::UnknownKey {
                key: key.to_owned(),
            },
        });
    };
    let parsed = Mode::parse(value)
        .filter(|m| !matches!(key, "sync" | "review" | "minidumps") || *m != Mode::Local);
    parsed
        .map(|m| (key, m))
        .ok_or_else(|| SettingsError::InvalidValue {
            key: key.to_owned(),
            value: value.to_string(),
            expected: if matches!(key, "sync" | "review" | "minidumps") {
                "a boolean (true/false, 1/0, yes/no, on/off)"
            } else {
                "off, local or on (or a boolean: true/false, 1/0, yes/no)"
            },
        })
}

/// Splits a `key=value` command-line argument. The value stays a string; [`Settings::update`]
/// types it.
#[cfg(any(feature = "cli", test))] // used by the CLI only
pub(crate) fn parse_assignment(arg: &str) -> Result<(String, Value), SettingsError> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((
            key.trim().to_owned(),
            Value::String(value.trim().to_owned()),
        )),
        _ => Err(SettingsError::NotAnAssignment {
            arg: arg.to_owned(),
        }),
    }
}

/// Parses the file. `Ok((data, complete))`: `complete` is false when generated fields (the
/// anonymous id or the salt) were missing and had to be made up, so the file must be
/// rewritten to keep them stable. `Err` describes what is wrong, with line and column.
fn parse(bytes: &[u8]) -> Result<(SettingsData, bool), String> {
    if bytes.is_empty() {
        return Err("the file is empty (truncated?)".to_owned());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value: Value = serde_json::from_str(text).map_err(|e| describe_json_error(&e))?;
    let Value::Object(map) = &value else {
        return Err(format!(
            "expected a JSON object at the top level, found {}",
            json_type(&value)
        ));
    };
    // A key this version does not know is kept (a newer version's); one that reads as a
    // misspelled setting (`Sync`, `crash-reports`, `usages`) was meant as that setting, and
    // ignoring it could turn the user's "no" into a "yes".
    for key in map.keys() {
        if let Some(meant) = misspelled_setting(key) {
            return Err(format!(
                "the key '{key}' is not a setting; did you mean '{meant}'?"
            ));
        }
    }
    let complete = map.contains_key("anonymous_id") && map.contains_key("salt");
    let data: SettingsData = serde_json::from_str(text).map_err(|e| describe_json_error(&e))?;
    Ok((data, complete))
}

/// The setting an unknown key misspells: the same but for case, `-` or spaces for `_`, or
/// one letter added, left out or changed.
fn misspelled_setting(key: &str) -> Option<&'static str> {
    if key.len() > 32 || SETTABLE_KEYS.contains(&key) {
        return None;
    }
    let folded: Vec<char> = key
        .trim()
        .chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    SETTABLE_KEYS.iter().copied().find(|setting| {
        let setting: Vec<char> = setting.chars().collect();
        within_one_edit(&folded, &setting)
    })
}

/// Whether `a` and `b` are equal or one insertion, deletion or substitution apart.
fn within_one_edit(a: &[char], b: &[char]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if long.len() - short.len() > 1 {
        return false;
    }
    let prefix = short.iter().zip(long).take_while(|(x, y)| x == y).count();
    if short.len() == long.len() {
        short[prefix..]
            .iter()
            .skip(1)
            .eq(long[prefix..].iter().skip(1))
    } else {
        short[prefix..] == long[prefix + 1..]
    }
}

fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Eof => "truncated JSON",
        Category::Syntax => "invalid JSON",
        Category::Data => "wrong type",
        Category::Io => "read error",
    };
    format!("{what}: {e}")
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads the settings file: a regular file (not a link, not a FIFO) of at most
/// [`fsx::SMALL_FILE_MAX`] bytes.
fn read_settings_file(path: &Path) -> io::Result<Vec<u8>> {
    fsx::read_capped(path, fsx::SMALL_FILE_MAX)
}

/// Creates `dir` (and its parents) readable by the user only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SettingsError> {
    fsx::create_private_dir(dir).map_err(io_err("create", dir))
}

/// Runs `f` holding an exclusive lock on `<path>.lock`, waiting at most [`LOCK_WAIT`].
fn with_lock<T>(
    path: &Path,
    f: impl FnOnce() -> Result<T, SettingsError>,
) -> Result<T, SettingsError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = fsx::open_lock_file(&lock_path).map_err(io_err("create", &lock_path))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SettingsError::LockTimeout {
                    path: lock_path,
                    waited: start.elapsed(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
    }
    let result = f();
    // Closing the file releases the lock; unlock explicitly to release it before the close.
    let _ = file.unlock();
    result
}

/// The settings as the file holds them. While nobody has decided, the switches that would
/// read as "on" are left out (they are defaults, not anyone's choice), so the file never
/// looks like a "yes" that was not given.
fn settings_bytes(data: &SettingsData) -> Vec<u8> {
    let mut value = serde_json::to_value(data).unwrap_or_default();
    if !data.consent.decided
        && let Some(map) = value.as_object_mut()
    {
        if data.sync {
            map.remove("sync");
        }
        if data.crash_reports == Mode::On {
            map.remove("crash_reports");
        }
        if data.usage == Mode::On {
            map.remove("usage");
        }
    }
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text.into_bytes()
}

/// Writes `data` to `path` atomically: temp file in the same directory (mode 0600), fsync,
/// rename, fsync of the directory.
fn write_atomically(path: &Path, data: &SettingsData) -> Result<(), SettingsError> {
    fsx::write_atomically(path, &settings_bytes(data)).map_err(io_err("write", path))
}

/// Keeps a corrupt file as `<name>.corrupt-<unix time>` (with `-N` if that exists).
///
/// The corrupt file keeps its name until the "no" that replaces it is written: it is first
/// hard-linked (or copied) aside, so a full disk can never leave the path empty, which the
/// next run would take for a first run.
fn move_aside(path: &Path) -> Result<PathBuf, SettingsError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!("{}.corrupt-{secs}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while fs::symlink_metadata(&target).is_ok() {
        target = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    if fs::hard_link(path, &target).is_err() {
        // No hard links here: a copy, bounded (a file too large to copy stays where it is,
        // and the settings stay unusable, which means "no").
        let bytes = fsx::read_capped(path, 16 * fsx::SMALL_FILE_MAX)
            .map_err(io_err("keep a copy of", path))?;
        fsx::write_atomically(&target, &bytes).map_err(io_err("keep a copy of", path))?;
    }
    Ok(target)
}

/// The current time as RFC 3339 in UTC, to the second.
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip() {
        let data = SettingsData::default();
        let text = serde_json::to_string(&data).unwrap();
        let (back, complete) = parse(text.as_bytes()).unwrap();
        assert!(complete);
        assert_eq!(back, data);
    }

    #[test]
    fn missing_generated_fields_are_incomplete() {
        let (data, complete) = parse(br#"{"sync": false}"#).unwrap();
        assert!(!complete);
        assert!(!data.sync);
        assert_eq!(data.crash_reports, Mode::On);
    }

    #[test]
    fn unknown_keys_survive() {
        let (data, _) = parse(br#"{"sync": true, "theme": {"dark": 1}}"#).unwrap();
        let text = serde_json::to_string(&data).unwrap();
        assert!(text.contains(r#""theme":{"dark":1}"#), "{text}");
        // Not misspellings: other words, and the generated fields.
        for key in ["synced_at", "use", "usage_id", "reviewer", "theme", "salt"] {
            let text = format!(r#"{{"sync": true, "{key}": "x"}}"#);
            assert!(parse(text.as_bytes()).is_ok(), "{key}");
        }
    }

    #[test]
    fn a_misspelled_setting_makes_the_file_unreadable() {
        // `"Sync": false` means no; read past, it would leave the default yes.
        for (key, meant) in [
            ("Sync", "sync"),
            ("SYNC", "sync"),
            ("synk", "sync"),
            ("crash-reports", "crash_reports"),
            ("crash_report", "crash_reports"),
            ("Usage ", "usage"),
            ("usages", "usage"),
            ("minidump", "minidumps"),
        ] {
            let text = format!(r#"{{"sync": true, "{key}": false}}"#);
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(
                err.contains(&format!("'{key}'")) && err.contains(&format!("'{meant}'")),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn parse_problems_are_described() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"{\"sync\": tr", "truncated JSON"),
            (b"{\"sync\": true,,}", "invalid JSON: "),
            (
                b"{\"sync\": \"maybe\"}",
                "wrong type: invalid type: string \"maybe\", expected a boolean at line 1 column",
            ),
            (
                b"[1, 2]",
                "expected a JSON object at the top level, found an array",
            ),
            (
                b"{\"sync\": true, \"x\": \"\xff\"}",
                "not valid UTF-8 (invalid byte at offset 21)",
            ),
        ];
        for (bytes, expected) in cases {
            let problem = parse(bytes).unwrap_err();
            assert!(
                problem.contains(expected),
                "{problem:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn changes_are_validated() {
        assert_eq!(
            validate_change("sync", &Value::from("False")).unwrap(),
            ("sync", Mode::Off)
        );
        assert_eq!(
            validate_change("usage", &Value::from("on")).unwrap(),
            ("usage", Mode::On)
        );
        assert_eq!(
            validate_change("crash_reports", &Value::from(true)).unwrap(),
            ("crash_reports", Mode::On)
        );
        assert!(matches!(
            validate_change("sync", &Value::from("maybe")),
            Err(SettingsError::InvalidValue { .. })
        ));
        assert!(matches!(
            validate_change("sync", &Value::from(1)),
            Err(SettingsError::InvalidValue { .. })
        ));
        assert!(matches!(
            validate_change("salt", &Value::from("x")),
            Err(SettingsError::ReadOnlyKey { .. })
        ));
        assert!(matches!(
            validate_change("colour", &Value::from("x")),
            Err(SettingsError::UnknownKey { .. })
        ));
    }

    #[test]
    fn assignments() {
        assert_eq!(
            parse_assignment("sync=False").unwrap(),
            ("sync".into(), Value::from("False"))
        );
        assert_eq!(
            parse_assignment(" usage = 0 ").unwrap(),
            ("usage".into(), Value::from("0"))
        );
        assert!(parse_assignment("sync").is_err());
        assert!(parse_assignment("=1").is_err());
    }

    #[test]
    fn an_emptied_file_is_not_overwritten_with_a_stale_yes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        std::fs::write(
            &path,
            r#"{"sync": true, "consent": {"decided": true, "granted": true, "via": "cli"}}"#,
        )
        .unwrap();
        let mut held = Settings::load_from(&path).unwrap();
        assert!(held.data().sync);
        // Another process's "no" on a full disk empties the file.
        std::fs::write(&path, b"").unwrap();
        held.update([("review", "true")]).unwrap();
        let on_disk = Settings::load_from(&path).unwrap();
        assert!(!on_disk.data().sync, "{:?}", on_disk.data());
        assert!(!on_disk.consent().granted, "{:?}", on_disk.consent());
    }

    #[test]
    fn the_yes_to_minidumps_is_a_boolean_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let mut s = Settings::load_from(&path).unwrap();
        assert!(!s.data().minidumps, "off until the user says yes");
        let id = s.anonymous_id();
        s.update([("minidumps", "yes")]).unwrap();
        assert!(Settings::load_from(&path).unwrap().data().minidumps);
        // A "no" to minidumps is not a "no" to crash reports: the id stays.
        s.update([("minidumps", false)]).unwrap();
        let on_disk = Settings::load_from(&path).unwrap();
        assert!(!on_disk.data().minidumps);
        assert!(on_disk.data().sync);
        assert_eq!(on_disk.anonymous_id(), id);
        let err = s.update([("minidumps", "local")]).unwrap_err().to_string();
        assert!(
            err.contains("minidumps") && err.contains("boolean"),
            "{err}"
        );
        // A mistyped value in the file is an unreadable file, which means no.
        std::fs::write(&path, r#"{"sync": true, "minidumps": "yes please"}"#).unwrap();
        assert!(
            Settings::load_from(&path)
                .map(|s| !s.data().minidumps)
                .unwrap_or(true)
        );
    }

    #[test]
    fn rfc3339_has_no_fraction() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.ends_with('Z'));
    }
}
