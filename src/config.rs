//! The host app's configuration: who the app is, where reports go, and how consent is asked.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sink::Sink;

/// The longest any configured wait or window may be (one day): deadlines are computed as
/// `now + duration`, and a larger value (`Duration::MAX`) would overflow.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// The most usage events the in-memory queue may hold.
const MAX_USAGE_QUEUE: usize = 10_000;

/// `duration`, at most [`MAX_WAIT`].
pub(crate) fn clamp_wait(duration: Duration) -> Duration {
    duration.min(MAX_WAIT)
}

/// How an app asks its users for consent.
///
/// ```
/// let config = consentry::Config::new("myapp", "1.0.0").policy(consentry::Policy::OptOut);
/// assert_eq!(config.get_policy(), consentry::Policy::OptOut);
/// assert_eq!(consentry::Policy::default(), consentry::Policy::OptIn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Nothing is sent until the user said yes (with [`ask`](crate::ask), the CLI, the API or
    /// `<APP>_TELEMETRY=1`). The default.
    #[default]
    OptIn,
    /// The first run prints a notice saying what is collected and how to turn it off, records
    /// that it did, and sends nothing; later runs send unless the user said no.
    OptOut,
}

/// A rule that drops an event before it is scrubbed or stored.
///
/// Ultralytics drops `KeyboardInterrupt`, `FileNotFoundError` and out-of-memory errors: errors
/// that say something about the user's environment, not about a bug.
///
/// ```
/// let config = consentry::Config::new("myapp", "1.0.0")
///     .ignore(consentry::Ignore::error_type("Interrupted"))
///     .ignore(consentry::Ignore::message_contains("out of memory"));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ignore {
    /// Drop events whose exception type (any link of the chain) is this: see
    /// [`Ignore::error_type`].
    ErrorType(String),
    /// Drop events whose message or any exception value contains this (case-sensitive).
    MessageContains(String),
}

impl Ignore {
    /// Drop events whose exception type, in any link of the error chain, is `name`: the
    /// type's path (`mytool::ParseErr`), its last segment (`ParseErr`), or, for a
    /// `std::io::Error`, its `ErrorKind` (`NotFound`, `Interrupted`, `PermissionDenied`).
    ///
    /// ```
    /// let rule = consentry::Ignore::error_type("NotFound");
    /// # let _ = rule;
    /// ```
    pub fn error_type(name: impl Into<String>) -> Self {
        Ignore::ErrorType(name.into())
    }

    /// Drop events whose message or any exception value contains `needle`.
    ///
    /// ```
    /// let rule = consentry::Ignore::message_contains("No space left on device");
    /// # let _ = rule;
    /// ```
    pub fn message_contains(needle: impl Into<String>) -> Self {
        Ignore::MessageContains(needle.into())
    }
}

/// The app's last look at an event, after scrubbing: return `None` to drop it. Set it with
/// [`Config::before_send`].
///
/// ```
/// let hook: consentry::BeforeSend = std::sync::Arc::new(|event| Some(event));
/// # let _ = hook;
/// ```
pub type BeforeSend = Arc<dyn Fn(serde_json::Value) -> Option<serde_json::Value> + Send + Sync>;

/// [`Config::fingerprint`]: given an event (Sentry JSON, before scrubbing), the fingerprint
/// to group it by, or `None` for consentry's default.
pub type Fingerprint = Arc<dyn Fn(&serde_json::Value) -> Option<Vec<String>> + Send + Sync>;

/// Everything consentry needs to know about the host app.
///
/// Built once in `main` and handed to [`init`](crate::init). Most apps need only
/// [`app_info!`](crate::app_info) and a DSN:
///
/// ```
/// let config = consentry::app_info!()
///     .dsn("https://key@o0.ingest.sentry.io/0")
///     .policy(consentry::Policy::OptIn)
///     .flush_timeout(std::time::Duration::from_secs(2));
/// assert_eq!(config.app_name(), env!("CARGO_PKG_NAME"));
/// ```
#[derive(Clone)]
#[must_use]
pub struct Config {
    pub(crate) app_name: String,
    pub(crate) app_version: String,
    pub(crate) dsn: Option<String>,
    pub(crate) usage_sink: Option<Sink>,
    pub(crate) policy: Policy,
    pub(crate) config_dir: Option<PathBuf>,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) allow_ci: bool,
    pub(crate) flush_timeout: Duration,
    pub(crate) usage_flush_timeout: Duration,
    pub(crate) usage_interval: Duration,
    pub(crate) usage_queue_capacity: usize,
    pub(crate) outbox_max_envelopes: usize,
    pub(crate) outbox_max_bytes: u64,
    pub(crate) attach_backtrace: bool,
    pub(crate) dedup_window: Duration,
    pub(crate) prompt_timeout: Duration,
    pub(crate) review: bool,
    pub(crate) usage_events: Vec<&'static str>,
    pub(crate) distributed: bool,
    pub(crate) consent_group: Option<String>,
    pub(crate) save_panics_locally: bool,
    pub(crate) native_crashes: bool,
    pub(crate) minidumps: bool,
    pub(crate) fingerprint: Option<Fingerprint>,
    /// Built by the `consentry` binary, which does not know the app's catalog.
    pub(crate) standalone: bool,
    pub(crate) environment: Option<String>,
    pub(crate) ignore: Vec<Ignore>,
    pub(crate) before_send: Option<BeforeSend>,
    pub(crate) scrub_rules: Vec<crate::scrub::RuleConfig>,
    pub(crate) scrub_disabled: Vec<String>,
    pub(crate) cli_command: Option<String>,
    pub(crate) privacy_url: Option<String>,
    pub(crate) retention: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("app_name", &self.app_name)
            .field("app_version", &self.app_version)
            .field("dsn", &self.dsn.as_ref().map(|_| "<set>"))
            .field("usage_sink", &self.usage_sink)
            .field("policy", &self.policy)
            .field("config_dir", &self.config_dir)
            .field("data_dir", &self.data_dir)
            .field("allow_ci", &self.allow_ci)
            .field("flush_timeout", &self.flush_timeout)
            .finish_non_exhaustive()
    }
}

/// Fills [`Config::new`] with the calling crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`.
///
/// ```
/// let config = consentry::app_info!();
/// assert_eq!(config.app_name(), env!("CARGO_PKG_NAME"));
/// assert_eq!(config.app_version(), env!("CARGO_PKG_VERSION"));
/// ```
#[macro_export]
macro_rules! app_info {
    () => {
        $crate::Config::new(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
    };
}

impl Config {
    /// A configuration for the app `name` at `version`, with every other setting at its default:
    /// no DSN (reports stay in the local outbox), no usage sink, [`Policy::OptIn`].
    ///
    /// The name is checked by [`init`](crate::init) (see [`Config::validate`]): it names the
    /// environment variables (`<APP>_TELEMETRY`) and the directories consentry uses.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.2.3");
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Config {
            app_name: name.into(),
            app_version: version.into(),
            dsn: None,
            usage_sink: None,
            policy: Policy::OptIn,
            config_dir: None,
            data_dir: None,
            allow_ci: false,
            flush_timeout: Duration::from_secs(2),
            usage_flush_timeout: Duration::from_millis(300),
            usage_interval: Duration::from_secs(30),
            usage_queue_capacity: 25,
            outbox_max_envelopes: 100,
            outbox_max_bytes: 10 * 1024 * 1024,
            attach_backtrace: true,
            dedup_window: Duration::from_secs(60),
            prompt_timeout: Duration::from_secs(30),
            review: false,
            usage_events: Vec::new(),
            distributed: false,
            consent_group: None,
            save_panics_locally: true,
            native_crashes: true,
            minidumps: false,
            fingerprint: None,
            standalone: false,
            environment: None,
            ignore: Vec::new(),
            before_send: None,
            scrub_rules: Vec::new(),
            scrub_disabled: Vec::new(),
            cli_command: None,
            privacy_url: None,
            retention: None,
        }
    }

    /// The Sentry DSN crash and error reports go to. Without one, reports stay in the local
    /// outbox and the audit log. A malformed DSN is reported once by `init` and reporting
    /// stays off.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").dsn("https://key@o0.ingest.sentry.io/0");
    /// assert!(config.validate().is_ok());
    /// ```
    pub fn dsn(mut self, dsn: impl Into<String>) -> Self {
        let dsn = dsn.into();
        self.dsn = if dsn.trim().is_empty() {
            None
        } else {
            Some(dsn)
        };
        self
    }

    /// Where anonymous usage pings go.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .usage_sink(consentry::Sink::json("https://collect.example.com/v1"));
    /// # let _ = config;
    /// ```
    pub fn usage_sink(mut self, sink: Sink) -> Self {
        self.usage_sink = Some(sink);
        self
    }

    /// How consent is asked: [`Policy::OptIn`] (the default) or [`Policy::OptOut`].
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").policy(consentry::Policy::OptOut);
    /// # let _ = config;
    /// ```
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The directory holding `settings.json` (default: the OS config directory, then the app
    /// name). The environment variable `<APP>_CONFIG_DIR` takes precedence over this.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").config_dir("/tmp/myapp-config");
    /// # let _ = config;
    /// ```
    pub fn config_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config_dir = Some(dir.into());
        self
    }

    /// The directory holding the outbox and the audit log (default: the OS local data
    /// directory, then the app name). The environment variable `<APP>_DATA_DIR` takes
    /// precedence over this.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").data_dir("/tmp/myapp-data");
    /// # let _ = config;
    /// ```
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Allow reporting when a CI environment is detected (off by default: CI runs are not
    /// users, and nobody is there to consent).
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").allow_ci(true);
    /// # let _ = config;
    /// ```
    pub fn allow_ci(mut self, allow: bool) -> Self {
        self.allow_ci = allow;
        self
    }

    /// How long dropping the [`Guard`](crate::Guard) (and the panic hook) may wait for crash
    /// reports to be delivered. Default 2 s. Nothing waits longer, even when the server never
    /// answers: what is not delivered stays in the outbox for the next run.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .flush_timeout(std::time::Duration::from_millis(500));
    /// # let _ = config;
    /// ```
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = clamp_wait(timeout);
        self
    }

    /// How long dropping the guard may wait for queued usage pings. Default 300 ms: a short CLI should not wait long for a sink; what is not sent in time stays on disk for the next run.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .usage_flush_timeout(std::time::Duration::from_millis(300));
    /// # let _ = config;
    /// ```
    pub fn usage_flush_timeout(mut self, timeout: Duration) -> Self {
        self.usage_flush_timeout = clamp_wait(timeout);
        self
    }

    /// The least time between two usage batches. Default 30 s (as Ultralytics).
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .usage_interval(std::time::Duration::from_secs(60));
    /// # let _ = config;
    /// ```
    pub fn usage_interval(mut self, interval: Duration) -> Self {
        self.usage_interval = clamp_wait(interval);
        self
    }

    /// How many usage events wait in memory at most; newer ones are counted and dropped.
    /// Default 25 (as Ultralytics); at most 10,000.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").usage_queue_capacity(50);
    /// # let _ = config;
    /// ```
    pub fn usage_queue_capacity(mut self, capacity: usize) -> Self {
        self.usage_queue_capacity = capacity.clamp(1, MAX_USAGE_QUEUE);
        self
    }

    /// Bounds of the on-disk outbox: at most `envelopes` files and `bytes` bytes; the oldest
    /// are dropped first. Default 100 envelopes and 10 MB.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").outbox_limits(20, 1 << 20);
    /// # let _ = config;
    /// ```
    pub fn outbox_limits(mut self, envelopes: usize, bytes: u64) -> Self {
        self.outbox_max_envelopes = envelopes.max(1);
        self.outbox_max_bytes = bytes.max(1024);
        self
    }

    /// Attach a stack trace of the capturing thread to errors captured with
    /// [`capture_error`](crate::capture_error). Default on. Panics always carry one.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").attach_backtrace(false);
    /// # let _ = config;
    /// ```
    pub fn attach_backtrace(mut self, attach: bool) -> Self {
        self.attach_backtrace = attach;
        self
    }

    /// The window in which the same error (same type and location) is sent once, with a count
    /// of how often it happened. Default 60 s.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .dedup_window(std::time::Duration::from_secs(300));
    /// # let _ = config;
    /// ```
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = clamp_wait(window);
        self
    }

    /// How long [`ask`](crate::ask) waits for an answer before taking it as "no". Default 30 s.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .prompt_timeout(std::time::Duration::from_secs(10));
    /// # let _ = config;
    /// ```
    pub fn prompt_timeout(mut self, timeout: Duration) -> Self {
        self.prompt_timeout = clamp_wait(timeout);
        self
    }

    /// The app's usage events, listed in the consent notice, the prompt and the privacy
    /// statement (so they cannot drift from what the app reports). A change to the list is a
    /// new version of the notice: users see it (or are asked) again before anything more is
    /// sent. [`event_catalog!`](crate::event_catalog) gives the list as `NAMES`.
    ///
    /// ```
    /// consentry::event_catalog! {
    ///     pub enum Event { Started = "started", Exported = "exported" }
    /// }
    /// let config = consentry::Config::new("myapp", "1.0.0").usage_events(Event::NAMES);
    /// # let _ = config;
    /// ```
    pub fn usage_events(mut self, names: &[&'static str]) -> Self {
        self.usage_events = names.to_vec();
        self
    }

    /// When nothing can be sent (reporting is off), a panic is still saved on this machine,
    /// scrubbed, where nothing is ever sent from, and one line after the panic message says
    /// where and how to look at it or attach it to a bug report (`telemetry show ID`,
    /// `telemetry export ID`), as human-panic helps users file issues. On by default;
    /// `false` turns the line and the saving off. Not in a forked child, not in CI.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").save_panics_locally(false);
    /// # let _ = config;
    /// ```
    pub fn save_panics_locally(mut self, on: bool) -> Self {
        self.save_panics_locally = on;
        self
    }

    /// Crashes that are not panics (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT: a bad
    /// pointer in `unsafe` or FFI code, a stack overflow, `std::process::abort()`) are
    /// recorded by a signal handler and reported at the next start, through the same
    /// scrubbing and consent gate. On by default where supported (Linux on x86-64 and ARM64
    /// with the `native` feature), and only while crash reports are on; `false` installs no
    /// handler (for an app with its own crash handler). See `PRIVACY.md` for what such a
    /// report holds.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").native_crashes(false);
    /// # let _ = config;
    /// ```
    pub fn native_crashes(mut self, on: bool) -> Self {
        self.native_crashes = on;
        self
    }

    /// Attach a full minidump to native crash reports (Linux, the `minidump` feature). Off
    /// by default, and even when on, a minidump is attached only if the user also said yes
    /// to minidumps themselves (`telemetry settings minidumps=true`), apart from their yes
    /// to crash reports: a minidump holds memory (thread stacks, the bytes around the
    /// crash), which may hold anything the program had in hand, a password or a path. It is
    /// written by this program started again as a helper (which is why [`crate::init`] must
    /// be the first thing `main` does), with non-pointer stack words overwritten, the
    /// command line and environment streams blanked and the user's names, host names and
    /// environment values overwritten wherever they appear. See `PRIVACY.md`.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").minidumps(true);
    /// # let _ = config;
    /// ```
    pub fn minidumps(mut self, on: bool) -> Self {
        self.minidumps = on;
        self
    }

    /// One consent for a family of tools (a CLI, its language server, its daemon): apps of
    /// the same group share one settings file (one consent, one anonymous id) in the group's
    /// config directory (`<config dir>/<group>/settings.json`). A `disable` in any of them
    /// stops all of them, live; a notice or prompt shown by one never overrides a "no"
    /// recorded by another. Each app keeps its own outbox. The name follows the app name's
    /// rules.
    ///
    /// ```
    /// let config = consentry::Config::new("acme-lsp", "1.0.0").consent_group("acme");
    /// # let _ = config;
    /// ```
    pub fn consent_group(mut self, group: impl Into<String>) -> Self {
        self.consent_group = Some(group.into());
        self
    }

    /// The app runs as several processes of a distributed job (`RANK`, `LOCAL_RANK`,
    /// `SLURM_PROCID`, `OMPI_COMM_WORLD_RANK`): the privacy statement then says that only
    /// rank 0 reports. (A non-zero rank never reports, whatever this says.)
    ///
    /// ```
    /// let config = consentry::Config::new("trainer", "1.0.0").distributed(true);
    /// # let _ = config;
    /// ```
    pub fn distributed(mut self, on: bool) -> Self {
        self.distributed = on;
        self
    }

    /// Crash reports the user reviews: never sent automatically. At the next interactive
    /// start [`ask`](crate::ask) asks whether to send what waits (`y/N/v` to view);
    /// non-interactively nothing is sent; `telemetry pending`, `show`, `send` and `discard`
    /// decide at any time. Users can also turn this on with `telemetry settings review=true`.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").review(true);
    /// # let _ = config;
    /// ```
    pub fn review(mut self, on: bool) -> Self {
        self.review = on;
        self
    }

    /// The Sentry environment name (default `production` for release builds, `debug` for
    /// debug builds).
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").environment("beta");
    /// # let _ = config;
    /// ```
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Drop events matching `rule` before they are scrubbed or stored.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .ignore(consentry::Ignore::error_type("Interrupted"));
    /// # let _ = config;
    /// ```
    pub fn ignore(mut self, rule: Ignore) -> Self {
        self.ignore.push(rule);
        self
    }

    /// How reports are grouped into issues on the server. By default consentry sends a
    /// fingerprint of the outermost error's type and the function of the innermost in-app
    /// frame (for a panic: its location), so the same bug from two machines is one issue
    /// even when its message holds a path or a number. The type is the last segment of its
    /// path (`ParseErr`; `std::io::Error` whole, and a generic last segment such as
    /// `reqwest::Error` whole, so two crates' errors stay apart), all that an error captured as a trait
    /// object (`capture_error(&*boxed)`) tells of it, so one error is one issue whichever
    /// way it is captured; an error whose `Debug` names no type (anyhow's print their
    /// message) is an `Error`. This closure replaces it (return
    /// `None` to keep the default for an event); `capture_error_grouped` sets one per call.
    /// Fingerprints are scrubbed like everything else.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").fingerprint(|event| {
    ///     let ty = event["exception"]["values"].as_array()?.last()?["type"].as_str()?;
    ///     Some(vec![ty.to_owned()])
    /// });
    /// # let _ = config;
    /// ```
    pub fn fingerprint<F>(mut self, f: F) -> Self
    where
        F: Fn(&serde_json::Value) -> Option<Vec<String>> + Send + Sync + 'static,
    {
        self.fingerprint = Some(Arc::new(f));
        self
    }

    /// The app's own hook, run on each event after scrubbing. It sees the event as Sentry JSON
    /// and returns it (possibly changed) or `None` to drop it. A panic inside it drops the
    /// event. Whatever it returns is scrubbed once more, so a hook cannot put PII back.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").before_send(|mut event| {
    ///     event["tags"]["channel"] = "beta".into();
    ///     Some(event)
    /// });
    /// # let _ = config;
    /// ```
    pub fn before_send<F>(mut self, hook: F) -> Self
    where
        F: Fn(serde_json::Value) -> Option<serde_json::Value> + Send + Sync + 'static,
    {
        self.before_send = Some(Arc::new(hook));
        self
    }

    /// Add a scrubbing rule of the app's own (a literal list, a regex or a key name).
    ///
    /// ```
    /// use consentry::scrub::{Redaction, RuleConfig};
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .scrub_rule(RuleConfig::key("project-key", ["project_key"]).with_redaction(Redaction::Remove));
    /// # let _ = config;
    /// ```
    pub fn scrub_rule(mut self, rule: crate::scrub::RuleConfig) -> Self {
        self.scrub_rules.push(rule);
        self
    }

    /// Turn a builtin scrubbing rule off by name (see [`scrub`](crate::scrub) for the list).
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").disable_scrub_rule("phone");
    /// # let _ = config;
    /// ```
    pub fn disable_scrub_rule(mut self, name: impl Into<String>) -> Self {
        self.scrub_disabled.push(name.into());
        self
    }

    /// The command users type to manage telemetry, used in notices and messages. Default
    /// `"<app> telemetry"`.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0").cli_command("myapp config telemetry");
    /// # let _ = config;
    /// ```
    pub fn cli_command(mut self, command: impl Into<String>) -> Self {
        self.cli_command = Some(command.into());
        self
    }

    /// A page where users read the app's privacy statement, shown in the consent prompt and
    /// the first-run notice.
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .privacy_url("https://example.com/myapp/privacy");
    /// # let _ = config;
    /// ```
    pub fn privacy_url(mut self, url: impl Into<String>) -> Self {
        self.privacy_url = Some(url.into());
        self
    }

    /// The app's statement on how long reports and usage data are kept, for the privacy
    /// statement (see [`privacy_statement`](crate::privacy_statement)).
    ///
    /// ```
    /// let config = consentry::Config::new("myapp", "1.0.0")
    ///     .retention("Crash reports are deleted after 90 days; usage statistics after 14 months.");
    /// # let _ = config;
    /// ```
    pub fn retention(mut self, statement: impl Into<String>) -> Self {
        self.retention = Some(statement.into());
        self
    }

    /// The app name given to [`Config::new`].
    ///
    /// ```
    /// assert_eq!(consentry::Config::new("myapp", "1.0.0").app_name(), "myapp");
    /// ```
    pub fn app_name(&self) -> &str {
        &self.app_name
    }

    /// The app version given to [`Config::new`].
    ///
    /// ```
    /// assert_eq!(consentry::Config::new("myapp", "1.0.0").app_version(), "1.0.0");
    /// ```
    pub fn app_version(&self) -> &str {
        &self.app_version
    }

    /// The consent policy.
    ///
    /// ```
    /// assert_eq!(consentry::Config::new("myapp", "1.0.0").get_policy(), consentry::Policy::OptIn);
    /// ```
    pub fn get_policy(&self) -> Policy {
        self.policy
    }

    /// The prefix of this app's environment variables: the app name in upper case with `-`
    /// turned into `_` (`my-app` reads `MY_APP_TELEMETRY`).
    ///
    /// ```
    /// assert_eq!(consentry::Config::new("my-app", "1.0.0").env_prefix(), "MY_APP");
    /// ```
    pub fn env_prefix(&self) -> String {
        self.app_name.to_ascii_uppercase().replace('-', "_")
    }

    /// The consent group's environment-variable prefix (`acme` reads `ACME_TELEMETRY_OFF`).
    pub(crate) fn group_env_prefix(&self) -> Option<String> {
        self.consent_group
            .as_ref()
            .map(|g| g.to_ascii_uppercase().replace('-', "_"))
    }

    /// The command shown to users in messages: [`Config::cli_command`] or `"<app> telemetry"`.
    pub(crate) fn command(&self) -> String {
        self.cli_command
            .clone()
            .unwrap_or_else(|| format!("{} telemetry", self.app_name))
    }

    /// The Sentry environment: the configured one, else by build profile.
    pub(crate) fn environment_name(&self) -> String {
        self.environment.clone().unwrap_or_else(|| {
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "production"
            }
            .to_owned()
        })
    }

    /// Checks the app name and the DSN.
    ///
    /// ```
    /// assert!(consentry::Config::new("my-app_2", "1").validate().is_ok());
    /// let err = consentry::Config::new("My App", "1").validate().unwrap_err();
    /// assert!(err.to_string().contains("app name"));
    /// let err = consentry::Config::new("myapp", "1").dsn("not a dsn").validate().unwrap_err();
    /// assert!(err.to_string().contains("DSN"));
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_app_name(&self.app_name)?;
        if let Some(group) = &self.consent_group {
            validate_app_name(group)?;
        }
        if let Some(dsn) = &self.dsn {
            parse_dsn(dsn)?;
        }
        if let Some(sink) = &self.usage_sink {
            sink.validate().map_err(|why| ConfigError {
                kind: ConfigErrorKind::Sink(why),
            })?;
        }
        Ok(())
    }

    pub(crate) fn parsed_dsn(&self) -> Option<sentry::types::Dsn> {
        self.dsn.as_deref().and_then(|dsn| parse_dsn(dsn).ok())
    }
}

/// What is wrong with a [`Config`].
///
/// ```
/// let err = consentry::Config::new("Bad Name", "1").validate().unwrap_err();
/// assert!(matches!(err.kind(), consentry::ConfigErrorKind::AppName(_)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ConfigError {
    kind: ConfigErrorKind,
}

impl ConfigError {
    /// What kind of problem this is.
    ///
    /// ```
    /// let err = consentry::Config::new("myapp", "1").dsn("nope").validate().unwrap_err();
    /// assert!(matches!(err.kind(), consentry::ConfigErrorKind::Dsn(_)));
    /// ```
    pub fn kind(&self) -> &ConfigErrorKind {
        &self.kind
    }
}

/// The kinds of [`ConfigError`].
///
/// ```
/// use consentry::ConfigErrorKind;
/// let err = consentry::Config::new("myapp", "1")
///     .usage_sink(consentry::Sink::json("http://collect.example.com/"))
///     .validate()
///     .unwrap_err();
/// assert!(matches!(err.kind(), ConfigErrorKind::Sink(why) if why.contains("only allowed to loopback")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The app name is not made of lower-case letters, digits, `-` and `_`.
    #[error(
        "invalid app name {0:?}: use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter"
    )]
    AppName(String),
    /// The DSN does not parse.
    #[error("invalid Sentry DSN: {0}")]
    Dsn(String),
    /// The usage sink is not usable.
    #[error("invalid usage sink: {0}")]
    Sink(String),
}

/// Checks an app name: 1 to 64 of `[a-z0-9_-]`, starting with a letter.
pub(crate) fn validate_app_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            kind: ConfigErrorKind::AppName(name.to_owned()),
        })
    }
}

/// Parses a DSN without panicking (sentry's `ClientOptions::dsn` panics on bad input).
/// Reports leave only over HTTPS, or plain HTTP to a loopback address (a local relay, tests).
pub(crate) fn parse_dsn(dsn: &str) -> Result<sentry::types::Dsn, ConfigError> {
    let parsed = dsn
        .trim()
        .parse::<sentry::types::Dsn>()
        .map_err(|e| ConfigError {
            kind: ConfigErrorKind::Dsn(format!("{e} (expected https://<key>@<host>/<project>)")),
        })?;
    crate::http::check_url(parsed.envelope_api_url().as_str()).map_err(|why| ConfigError {
        kind: ConfigErrorKind::Dsn(why),
    })?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in ["a", "myapp", "my-app", "my_app2", "x1-y_z"] {
            assert!(validate_app_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "My",
            "1app",
            "-app",
            "my app",
            "my/app",
            "mÿ",
            long.as_str(),
        ] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_prefix_upper_cases_and_replaces_dashes() {
        assert_eq!(Config::new("my-app_2", "1").env_prefix(), "MY_APP_2");
    }

    #[test]
    fn a_dsn_over_plain_http_must_be_loopback() {
        assert!(parse_dsn("https://key@o0.ingest.sentry.io/0").is_ok());
        assert!(parse_dsn("http://key@127.0.0.1:9000/1").is_ok());
        let err = parse_dsn("http://key@sentry.example.com/1").unwrap_err();
        assert!(err.to_string().contains("plain http"), "{err}");
    }

    #[test]
    fn empty_dsn_means_none() {
        assert!(Config::new("a", "1").dsn("  ").dsn.is_none());
    }

    #[test]
    fn dsn_errors_do_not_panic() {
        let err = Config::new("a", "1")
            .dsn("https://nokey")
            .validate()
            .unwrap_err();
        assert!(matches!(err.kind(), ConfigErrorKind::Dsn(_)), "{err}");
    }
}
