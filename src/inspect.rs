//! Looking without sending: the full status of an app's telemetry, and a preview of what a
//! usage ping and a crash report from this machine would contain after scrubbing.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::config::Config;
use crate::consent::Decision;
use crate::env::EnvSnapshot;
use crate::paths::Paths;
use crate::pipeline::{Pipeline, Stack, Verdict};
use crate::report::{self, Captured, Kind};
use crate::settings::Settings;
use crate::usage::{Prop, Queued};

/// Everything `telemetry status` shows; see [`status_on_disk`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let status = consentry::status_on_disk(&config);
/// println!("{status}");
/// assert_eq!(status.to_json()["app"], "myapp");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Status {
    /// The app name.
    pub app: String,
    /// The decision a run of the app would make now (non-interactive).
    pub decision: Decision,
    /// The settings file.
    pub settings_file: Option<PathBuf>,
    /// The settings (salt hidden), if readable.
    pub settings: Option<Value>,
    /// Why the settings cannot be used, if they cannot.
    pub settings_error: Option<String>,
    /// The settings file was corrupt: what was wrong, and where it was moved.
    pub settings_recovered: Option<String>,
    /// The outbox directory.
    pub outbox_dir: Option<PathBuf>,
    /// Crash reports waiting in the outbox.
    pub outbox_reports: usize,
    /// Their size in bytes.
    pub outbox_bytes: u64,
    /// The audit log of what was sent.
    pub audit_log: Option<PathBuf>,
    /// Where crash reports go.
    pub crash_destination: String,
    /// Where usage pings go.
    pub usage_destination: String,
    /// `<APP>_TELEMETRY_DEBUG` is set: payloads are printed, nothing is sent.
    pub debug: bool,
    /// The server asked for a pause until this time (RFC 3339).
    pub rate_limited_until: Option<String>,
}

/// The status of `config`'s app as its files and this environment say now: the decision a
/// run would make (non-interactive), the settings, what waits in the outbox, pauses. It
/// does not look at this process's runtime; for that, see
/// [`current_decision`](crate::current_decision).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let status = consentry::status_on_disk(&config);
/// assert!(!status.decision.crash);
/// assert_eq!(status.outbox_reports, 0);
/// assert!(status.crash_destination.contains("no DSN"));
/// ```
pub fn status_on_disk(config: &Config) -> Status {
    let env = EnvSnapshot::for_app(
        &config.app_name,
        &config.env_prefix(),
        config.group_env_prefix().as_deref(),
    );
    let paths = Paths::resolve(config, &env);
    let settings_file = paths.settings_file();
    let settings = Settings::load_for(config, &paths).map_err(|e| e.to_string());
    let (settings, decision) = crate::gate::decide_on_disk(config, &env, settings, false);
    let outbox_dir = paths.outbox_dir();
    let (outbox_reports, outbox_bytes) = outbox_dir
        .clone()
        .map(|d| crate::outbox::Outbox::new(d, usize::MAX, u64::MAX).stats())
        .unwrap_or((0, 0));
    let local = crate::settings::Mode::Local;
    let crash_destination = match config.parsed_dsn() {
        _ if decision.crash_mode == local => {
            "none: local mode, reports are kept on this machine (kept/)".to_owned()
        }
        Some(dsn) => dsn.envelope_api_url().to_string(),
        None => "none: no DSN configured, reports stay in the local outbox".to_owned(),
    };
    let usage_destination = match &config.usage_sink {
        _ if decision.usage_mode == local => {
            "none: local mode, usage events are only written to the audit log".to_owned()
        }
        Some(sink) => format!("{} ({})", sink.display_url(), sink.format_name()),
        None => "none: no usage sink configured".to_owned(),
    };
    // Clamped when read: a corrupt or hostile file shows at most a day from now.
    let rate_limited_until = paths
        .pauses_file()
        .map(|f| crate::transport::Pauses::load(&f))
        .filter(|p| {
            config
                .parsed_dsn()
                .is_some_and(|dsn| p.crash.endpoint == dsn.envelope_api_url().to_string())
        })
        .and_then(|p| p.crash.paused_until(SystemTime::now()))
        .map(rfc3339);
    Status {
        app: config.app_name.clone(),
        decision,
        settings_file,
        settings: settings.as_ref().ok().map(Settings::to_json),
        settings_recovered: settings
            .as_ref()
            .ok()
            .and_then(Settings::recovered)
            .map(|r| {
                format!(
                    "it was unreadable ({}); moved to {}",
                    r.problem,
                    r.moved_to.display()
                )
            }),
        settings_error: settings.err(),
        outbox_dir,
        outbox_reports,
        outbox_bytes,
        audit_log: paths.audit_log(),
        crash_destination,
        usage_destination,
        debug: env.debug(&config.env_prefix()),
        rate_limited_until,
    }
}

/// The old name of [`status_on_disk`].
#[deprecated(since = "0.2.0", note = "renamed `status_on_disk`")]
pub fn status_of(config: &Config) -> Status {
    status_on_disk(config)
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Status {
    /// The status as JSON, for scripts (`telemetry status --json`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
    /// let json = consentry::status_on_disk(&config).to_json();
    /// assert_eq!(json["crash"]["enabled"], false);
    /// ```
    pub fn to_json(&self) -> Value {
        json!({
            "app": self.app,
            "crash": {"enabled": self.decision.crash, "mode": self.decision.crash_mode.as_str(), "reason": self.decision.crash_reason, "reasons": self.decision.crash_reasons, "destination": self.crash_destination},
            "usage": {"enabled": self.decision.usage, "mode": self.decision.usage_mode.as_str(), "reason": self.decision.usage_reason, "reasons": self.decision.usage_reasons, "destination": self.usage_destination},
            "settings_file": self.settings_file,
            "settings": self.settings,
            "settings_error": self.settings_error,
            "settings_recovered": self.settings_recovered,
            "outbox": {"dir": self.outbox_dir, "reports": self.outbox_reports, "bytes": self.outbox_bytes},
            "audit_log": self.audit_log,
            "debug": self.debug,
            "rate_limited_until": self.rate_limited_until,
        })
    }
}

fn show(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map_or_else(|| "(none)".to_owned(), |p| p.display().to_string())
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The mode of each kind: off, local (kept on this machine), on.
        let word = |m: crate::settings::Mode| match m {
            crate::settings::Mode::On => "on ",
            crate::settings::Mode::Local => "local",
            crate::settings::Mode::Off => "off",
        };
        writeln!(f, "{} telemetry", self.app)?;
        writeln!(
            f,
            "  crash reports: {}  {}",
            word(self.decision.crash_mode),
            self.decision.crash_reason
        )?;
        writeln!(
            f,
            "  usage pings:   {}  {}",
            word(self.decision.usage_mode),
            self.decision.usage_reason
        )?;
        let mut others: Vec<&String> = Vec::new();
        for r in self
            .decision
            .crash_reasons
            .iter()
            .chain(&self.decision.usage_reasons)
        {
            if r != &self.decision.crash_reason
                && r != &self.decision.usage_reason
                && !others.contains(&r)
            {
                others.push(r);
            }
        }
        for r in others {
            writeln!(f, "                 also: {r}")?;
        }
        if self.debug {
            writeln!(
                f,
                "  debug mode:    payloads are printed to stderr, nothing is sent"
            )?;
        }
        writeln!(f, "  crash reports go to: {}", self.crash_destination)?;
        writeln!(f, "  usage pings go to:   {}", self.usage_destination)?;
        writeln!(f, "  settings:  {}", show(&self.settings_file))?;
        if let Some(e) = &self.settings_error {
            writeln!(f, "             unusable: {e}")?;
        }
        if let Some(r) = &self.settings_recovered {
            writeln!(f, "             {r}; defaults are used")?;
        }
        writeln!(
            f,
            "  outbox:    {} ({} crash report{} waiting, {} bytes)",
            show(&self.outbox_dir),
            self.outbox_reports,
            if self.outbox_reports == 1 { "" } else { "s" },
            self.outbox_bytes
        )?;
        if let Some(until) = &self.rate_limited_until {
            writeln!(f, "  paused:    the server asked to wait until {until}")?;
        }
        write!(f, "  audit log: {} (what was sent)", show(&self.audit_log))
    }
}

/// The privacy statement for `config`'s app: consentry's `PRIVACY.md` template filled in
/// from the configuration (destinations, how to opt out, files, retention), as Markdown.
/// Apps ship it to their users; `telemetry privacy` prints it.
///
/// ```
/// let config = consentry::Config::new("myapp", "1.0.0").retention("Kept for 90 days.");
/// let text = consentry::privacy_statement(&config);
/// assert!(text.starts_with("# myapp: what is collected"));
/// assert!(text.contains("MYAPP_TELEMETRY=0"));
/// assert!(text.contains("Kept for 90 days."));
/// assert!(!text.contains("{{"));
/// ```
pub fn privacy_statement(config: &Config) -> String {
    const TEMPLATE: &str = include_str!("../PRIVACY.md");
    let paths = Paths::of(config);
    let crash = match config.parsed_dsn() {
        Some(dsn) => format!("a Sentry server at `{}`", dsn.host()),
        None => "nowhere: no server is configured, reports stay on your machine".to_owned(),
    };
    let usage = match &config.usage_sink {
        Some(sink) => format!("`{}` ({})", sink.display_url(), sink.format_name()),
        None => "nowhere: usage statistics are not collected".to_owned(),
    };
    let policy = match config.policy {
        crate::Policy::OptIn => "",
        _ => {
            " (this app asks by showing a notice on its first run: it sends nothing during that run)"
        }
    };
    let template = TEMPLATE
        .split_once("-->")
        .map_or(TEMPLATE, |(_, rest)| rest.trim_start_matches('\n'));
    let title_end = TEMPLATE.find('\n').unwrap_or(0);
    let mut text = format!("{}\n\n{template}", &TEMPLATE[..title_end]);
    let settings = paths.settings_file().map_or_else(
        || "the settings file".to_owned(),
        |p| p.display().to_string(),
    );
    for (key, value) in [
        ("app", config.app_name.clone()),
        ("command", config.command()),
        ("env_prefix", config.env_prefix()),
        ("crash_destination", crash),
        ("usage_destination", usage),
        ("policy_note", policy.to_owned()),
        (
            "ci_note",
            if config.allow_ci {
                " unless the app allows it"
            } else {
                ""
            }
            .to_owned(),
        ),
        ("crash_fields", {
            let mut fields: Vec<&str> = crate::consent::REPORT_FIELDS
                .iter()
                .copied()
                .filter(|f| {
                    // Breadcrumbs come from the `log` and `tracing` integrations.
                    !f.starts_with("breadcrumbs") || cfg!(any(feature = "log", feature = "tracing"))
                })
                .collect();
            fields.push("how often the same error repeated");
            fields.join(", ")
        }),
        ("usage_fields", {
            let events = if config.usage_events.is_empty() {
                "the name of the action".to_owned()
            } else {
                format!(
                    "which of these happened: {}",
                    config.usage_events.join(", ")
                )
            };
            format!(
                "{events}, a few values about it and when it happened, the app and OS version, CPU architecture, Rust version, how the app was installed, container or WSL, the same random install id"
            )
        }),
        (
            "ranks_note",
            if config.distributed {
                ", nor from distributed-training ranks other than 0".to_owned()
            } else {
                String::new()
            },
        ),
        ("settings_file", settings),
        (
            "retention",
            config.retention.clone().unwrap_or_else(|| {
                "The developers of this app have not stated how long they keep the data.".to_owned()
            }),
        ),
    ] {
        text = text.replace(&format!("{{{{{key}}}}}"), &value);
    }
    text
}

/// A crash report waiting in the outbox; see [`pending_reports`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// for report in consentry::pending_reports(&config) {
///     println!("{}: {}", report.path.display(), report.event["exception"]);
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PendingReport {
    /// Its file.
    pub path: PathBuf,
    /// The event, scrubbed, as it will be sent.
    pub event: Value,
}

/// The crash reports waiting in `config`'s app's outbox, oldest first, as they will be sent.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// assert!(consentry::pending_reports(&config).is_empty());
/// ```
pub fn pending_reports(config: &Config) -> Vec<PendingReport> {
    let Some(dir) = Paths::of(config).outbox_dir() else {
        return Vec::new();
    };
    let outbox = crate::outbox::Outbox::new(dir, usize::MAX, u64::MAX);
    outbox
        .list()
        .into_iter()
        .filter_map(|entry| {
            let bytes = outbox.read(&entry.path).ok()?;
            Some(PendingReport {
                event: report::event_of_envelope(&bytes)?,
                path: entry.path,
            })
        })
        .collect()
}

/// What `telemetry preview` shows (see [`preview`]): a sample usage event and a sample crash report from this
/// machine, exactly as they would be sent, after scrubbing. Nothing is sent or stored.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let preview = consentry::preview(&config).unwrap();
/// assert_eq!(preview.usage["events"][0]["props"]["model"], "custom");
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Preview {
    /// The usage batch body, in the configured sink's wire format (plain JSON when none).
    pub usage: Value,
    /// The wire format of `usage`.
    pub usage_format: &'static str,
    /// The crash report event, scrubbed.
    pub crash: Value,
    /// What the scrubber removed from the sample crash report (rules and counts).
    pub scrubbed: String,
    /// A native crash report (a signal) from this thread's stack, as the next start would
    /// send it: the signal, instruction addresses symbolicated here, the modules' build ids
    /// and file names; no memory, no registers. `null` where native crashes are not caught.
    pub native_crash: Value,
    /// Whether a full minidump would go with that report, and why (it needs the app's
    /// `Config::minidumps` and the user's own `minidumps=true`), with what it would add.
    pub minidump: String,
}

/// Builds the preview for `config`'s app: the sample error carries this machine's home
/// path, user name and host name, so the preview shows them removed.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let preview = consentry::preview(&config).unwrap();
/// assert_eq!(preview.usage_format, "json");
/// assert!(preview.crash["exception"]["values"].is_array());
/// ```
pub fn preview(config: &Config) -> Result<Preview, PreviewError> {
    config.validate()?;
    let env = EnvSnapshot::for_app(
        &config.app_name,
        &config.env_prefix(),
        config.group_env_prefix().as_deref(),
    );
    let paths = Paths::resolve(config, &env);
    let ids = Settings::load_for(config, &paths)
        .ok()
        .map(|s| (s.anonymous_id(), s.data().salt.clone()))
        .unwrap_or_else(|| (uuid::Uuid::nil(), String::new()));
    let pipeline = Pipeline::new(config.clone(), ids.1.clone(), uuid::Uuid::new_v4());
    let identity = crate::identity::Identity::current();
    let home = identity
        .home
        .clone()
        .unwrap_or_else(|| "/home/user".to_owned());
    let user = identity
        .users
        .first()
        .cloned()
        .unwrap_or_else(|| "user".to_owned());
    let host = identity
        .hostnames
        .first()
        .cloned()
        .unwrap_or_else(|| "host".to_owned());

    let sample = SampleError {
        message: format!("cannot load {home}/projects/demo/config.toml"),
        source: Some(Box::new(SampleError {
            message: format!("permission denied for {user} on {host}"),
            source: None,
        })),
    };
    // The same pipeline a real report goes through, the app's hook included.
    let captured = Captured {
        event: report::event_from_error(&sample),
        backtrace: Some(report::RawStack::capture()),
        breadcrumb_seq: 0,
        kind: Kind::Error,
    };
    let (crash, scrubbed) = match pipeline.run(captured, Stack::Symbolicate, None, ids.0) {
        Verdict::Keep { event, report, .. } => (event.get().clone(), report.to_string()),
        Verdict::Dropped => (
            Value::Null,
            "the app's ignore rules or before_send hook drop this sample report".to_owned(),
        ),
        Verdict::Repeat => (Value::Null, String::new()),
        Verdict::Failed(e) => return Err(PreviewError::Scrub(e)),
    };

    let queued = Queued {
        name: "command".into(),
        props: vec![
            ("name".into(), Prop::from("preview")),
            (
                "input".into(),
                Prop::from(format!("{home}/projects/demo/data.csv")),
            ),
            (
                "model".into(),
                Prop::choice("my-private-model", &["small", "large"]),
            ),
            ("project".into(), Prop::hashed("acme-secret-project")),
        ],
        time: SystemTime::now(),
    };
    let record = pipeline.usage(queued).ok_or_else(|| {
        PreviewError::Scrub("the sample usage event could not be scrubbed".to_owned())
    })?;
    let json_sink = crate::sink::Sink::json("https://collect.invalid/");
    let sink = config.usage_sink.as_ref().unwrap_or(&json_sink);
    let usage = sink.body(
        ids.0,
        &[record.get().clone()],
        &pipeline.usage_metadata(),
        &crate::settings::now_rfc3339(),
    );
    // A native crash: the handler's own record format, made from this thread's stack.
    let native_crash = crate::native::sample()
        .filter(|_| crate::native::SUPPORTED && config.native_crashes)
        .map(|record| {
            let captured = crate::native::event_of(&record, Some(&config.app_name), true);
            match pipeline.run(captured, Stack::Addresses, None, ids.0) {
                Verdict::Keep { event, .. } => event.get().clone(),
                _ => Value::Null,
            }
        })
        .unwrap_or(Value::Null);
    let settings = Settings::load_for(config, &paths).map_err(|e| e.to_string());
    let user_yes = settings.as_ref().is_ok_and(|s| s.data().minidumps);
    let (_, decision) = crate::gate::decide_on_disk(config, &env, settings, false);
    let sent = decision.crash && decision.crash_mode == crate::settings::Mode::On;
    let minidump = minidump_line(&native_crash, sent, config.minidumps, user_yes);
    Ok(Preview {
        usage,
        usage_format: sink.format_name(),
        crash,
        scrubbed,
        native_crash,
        minidump,
    })
}

/// What [`Preview::minidump`] says.
fn minidump_line(native_crash: &Value, sent: bool, app: bool, user: bool) -> String {
    const ADDS: &str = "a minidump adds the memory of every thread's stack and around the crash (stack words that are not pointers overwritten; your names, host names and environment values overwritten wherever they appear; the command line and environment streams removed): it may still hold what the program had in hand, such as a password or a file's contents";
    let built = cfg!(all(feature = "minidump", target_os = "linux"));
    let why_not = if native_crash.is_null() {
        "native crashes are not caught in this build"
    } else if !built {
        "this build has no minidump support"
    } else if !sent {
        "crash reports are not sent from this machine"
    } else if !app {
        "the app has minidumps off"
    } else if !user {
        "you have not said yes to them ('telemetry settings minidumps=true')"
    } else {
        return format!("A minidump would go with it: {ADDS}.");
    };
    format!("No minidump would go with it: {why_not}. If it did, {ADDS}.")
}

/// Why a preview could not be made.
///
/// ```
/// let config = consentry::Config::new("Not Valid", "1.0.0");
/// let err = consentry::preview(&config).unwrap_err();
/// assert!(matches!(err, consentry::PreviewError::Config(_)));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// The app's configuration is not valid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The sample could not be scrubbed (the app's rules do not compile, or scrubbing
    /// failed): a real report would be dropped the same way.
    #[error("cannot scrub the sample: {0}")]
    Scrub(String),
}

#[derive(Debug)]
struct SampleError {
    message: String,
    source: Option<Box<SampleError>>,
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SampleError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
