//! The `telemetry` command: a [`clap::Subcommand`] a host app mounts as `myapp telemetry ...`,
//! and that the `consentry` binary mounts as `consentry --app NAME ...`. Both run [`run`].
//!
//! ```
//! use clap::Parser;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Do the app's work.
//!     Run,
//!     /// Manage crash reports and usage pings.
//!     #[command(subcommand)]
//!     Telemetry(consentry::cli::Command),
//! }
//!
//! let cli = Cli::parse_from(["myapp", "telemetry", "status", "--json"]);
//! # let dir = tempfile::tempdir().unwrap();
//! let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
//! if let Command::Telemetry(cmd) = cli.command {
//!     let mut out = Vec::new();
//!     let mut err = Vec::new();
//!     let code = consentry::cli::run_with(&cmd, &config, &mut out, &mut err);
//!     assert_eq!(code, 0);
//! }
//! ```
//!
//! # Exit codes
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | failed: a file could not be read or written, or `scrub` met malformed input |
//! | 2 | bad input: an unknown setting, a bad value, a bad argument |
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use crate::config::{Config, Policy};
use crate::control::{self, Scope};
use crate::settings::{self, ConsentSource, Settings, SettingsError};

/// Exit code: done.
///
/// ```
/// assert_eq!(consentry::cli::EXIT_OK, 0);
/// ```
pub const EXIT_OK: u8 = 0;
/// Exit code: failed (I/O, malformed `scrub` input).
///
/// ```
/// assert_eq!(consentry::cli::EXIT_FAILED, 1);
/// ```
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad input (unknown setting, bad value, bad argument).
///
/// ```
/// assert_eq!(consentry::cli::EXIT_USAGE, 2);
/// ```
pub const EXIT_USAGE: u8 = 2;

/// The `telemetry` subcommands.
///
/// ```
/// use clap::Parser;
/// #[derive(Parser)]
/// struct Cli {
///     #[command(subcommand)]
///     telemetry: consentry::cli::Command,
/// }
/// let cli = Cli::parse_from(["myapp", "settings", "sync=false"]);
/// assert!(matches!(cli.telemetry, consentry::cli::Command::Settings { .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Show whether crash reports and usage pings are on, every reason, and the files used
    Status {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Turn crash reports and usage pings on (both unless one is named)
    Enable {
        /// Only crash and error reports
        #[arg(long, conflicts_with = "usage")]
        crash: bool,
        /// Only usage pings
        #[arg(long)]
        usage: bool,
        /// Record on this machine only: build and scrub reports, keep them (see `log`,
        /// `pending`), send nothing
        #[arg(long)]
        local: bool,
    },
    /// Turn crash reports and usage pings off (both unless one is named); deletes waiting reports
    Disable {
        /// Only crash and error reports
        #[arg(long, conflicts_with = "usage")]
        crash: bool,
        /// Only usage pings
        #[arg(long)]
        usage: bool,
    },
    /// Print the settings, change them (`settings sync=false usage=off`), or `settings reset`
    Settings {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// `key=value` pairs, or `reset`
        #[arg(value_name = "KEY=VALUE|reset")]
        args: Vec<String>,
    },
    /// Show what a usage ping and a crash report from this machine would contain (nothing is sent)
    Preview {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print the audit log, one line per request: when, kind, destination, status, title
    /// (--full adds each payload as sent)
    Log {
        /// Only the last N records
        #[arg(long, short = 'n', value_name = "N")]
        last: Option<usize>,
        /// Print one JSON record per line
        #[arg(long)]
        json: bool,
        /// Print each payload too, as it was sent
        #[arg(long)]
        full: bool,
        /// Print the crash reports waiting in the outbox instead
        #[arg(long)]
        outbox: bool,
    },
    /// List what waits to be sent: crash reports (id, when, size, title) and usage batches
    Pending {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Print one waiting report exactly as it would be sent
    Show {
        /// Its id (a unique prefix is enough)
        id: String,
    },
    /// Send waiting reports now (your decision: also reports kept locally or from before
    /// consent)
    Send {
        /// The report's id (a unique prefix is enough)
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every waiting report
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete waiting reports without sending them
    Discard {
        /// The report's id (a unique prefix is enough)
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Every waiting report
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Write one waiting report, scrubbed, to a file (to attach it to a bug report)
    Export {
        /// The report's id (a unique prefix is enough)
        id: String,
        /// Where to write it
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
    },
    /// Print the privacy statement: what is collected, where it goes, how to say no
    Privacy,
    /// Scrub Sentry events (one JSON object per line) from stdin or files; write them to stdout
    /// (a tool for developers: hidden from an app's mounted `telemetry` help, listed by the
    /// `consentry` binary's)
    #[command(hide = true)]
    Scrub {
        /// Files to read instead of stdin
        files: Vec<PathBuf>,
        /// Print a summary of what was removed to stderr
        #[arg(long)]
        report: bool,
        /// Skip malformed lines (still reported) instead of stopping at the first
        #[arg(long)]
        keep_going: bool,
        /// A user name to remove wherever it appears (repeatable)
        #[arg(long = "user", value_name = "NAME")]
        users: Vec<String>,
        /// A host name to remove wherever it appears (repeatable)
        #[arg(long = "hostname", value_name = "NAME")]
        hostnames: Vec<String>,
        /// A rule pack (TOML, or JSON if the name ends in .json) to apply too (repeatable)
        #[arg(long = "rules", value_name = "FILE")]
        rules: Vec<PathBuf>,
    },
}

impl Command {
    /// The options of `scrub` (the defaults for any other command).
    fn scrub_options(&self) -> ScrubOptions {
        match self {
            Command::Scrub {
                report,
                keep_going,
                users,
                hostnames,
                rules,
                ..
            } => ScrubOptions {
                report: *report,
                keep_going: *keep_going,
                users: users.clone(),
                hostnames: hostnames.clone(),
                rules: rules.clone(),
            },
            _ => ScrubOptions::default(),
        }
    }
}

/// Runs a command against stdout and stderr; returns the exit code.
///
/// ```no_run
/// # use clap::Parser;
/// # #[derive(Parser)]
/// # struct Cli { #[command(subcommand)] telemetry: consentry::cli::Command }
/// fn main() -> std::process::ExitCode {
///     let cli = Cli::parse();
///     consentry::cli::run(&cli.telemetry, &consentry::app_info!())
/// }
/// ```
pub fn run(command: &Command, config: &Config) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(run_with(
        command,
        config,
        &mut stdout.lock(),
        &mut stderr.lock(),
    ))
}

/// Runs a command, writing to `out` and `err`; returns the exit code (see the module docs).
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let config = consentry::Config::new("myapp", "1.0.0").config_dir(dir.path()).data_dir(dir.path());
/// let cmd = consentry::cli::Command::Settings { json: true, args: vec!["colour=blue".into()] };
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// assert_eq!(consentry::cli::run_with(&cmd, &config, &mut out, &mut err), consentry::cli::EXIT_USAGE);
/// assert!(String::from_utf8(err).unwrap().contains("unknown setting 'colour'"));
/// ```
pub fn run_with(
    command: &Command,
    config: &Config,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let result = match command {
        Command::Status { json } => status(config, *json, out),
        Command::Enable {
            crash,
            usage,
            local,
        } => enable(config, scope(*crash, *usage), *local, out),
        Command::Disable { crash, usage } => disable(config, scope(*crash, *usage), out),
        Command::Settings { json, args } => settings_cmd(config, *json, args, out, err),
        Command::Preview { json } => preview(config, *json, out),
        Command::Privacy => {
            write!(out, "{}", crate::inspect::privacy_statement(config)).map_err(Failure::from)
        }
        Command::Log {
            last,
            json,
            full,
            outbox,
        } => log(config, *last, *json, *full, *outbox, out),
        Command::Pending { json } => pending(config, *json, out),
        Command::Show { id } => show(config, id, out),
        Command::Send { id, all } => send(config, id.as_deref(), *all, out),
        Command::Discard { id, all } => discard(config, id.as_deref(), *all, out),
        Command::Export { id, output } => export(config, id, output, out),
        Command::Scrub { files, .. } => {
            return scrub_files(files, &command.scrub_options(), Some(config), out, err);
        }
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(Failure { code, message }) => {
            let _ = writeln!(err, "error: {message}");
            code
        }
    }
}

/// A failed command: the exit code and what to tell the user.
struct Failure {
    code: u8,
    message: String,
}

impl From<SettingsError> for Failure {
    fn from(e: SettingsError) -> Failure {
        let code = match e {
            SettingsError::UnknownKey { .. }
            | SettingsError::ReadOnlyKey { .. }
            | SettingsError::InvalidValue { .. }
            | SettingsError::NotAnAssignment { .. } => EXIT_USAGE,
            _ => EXIT_FAILED,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure {
            code: EXIT_FAILED,
            message: e.to_string(),
        }
    }
}

fn scope(crash: bool, usage: bool) -> Scope {
    match (crash, usage) {
        (true, false) => Scope::Crash,
        (false, true) => Scope::Usage,
        _ => Scope::All,
    }
}

fn what(scope: Scope) -> &'static str {
    match scope {
        Scope::Crash => "Crash reports are",
        Scope::Usage => "Usage pings are",
        _ => "Crash reports and usage pings are",
    }
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn status(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let status = crate::inspect::status_on_disk(config);
    if json {
        writeln!(out, "{}", pretty(&status.to_json()))?;
    } else {
        writeln!(out, "{status}")?;
    }
    Ok(())
}

fn enable(config: &Config, scope: Scope, local: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let mode = if local {
        crate::settings::Mode::Local
    } else {
        crate::settings::Mode::On
    };
    control::enable_with(config, scope, ConsentSource::Cli, mode)?;
    writeln!(
        out,
        "{} {} for {}. Turn off with '{} disable'.",
        what(scope),
        if local {
            "kept on this machine only (local mode: nothing is sent)"
        } else {
            "on"
        },
        config.app_name,
        config.command()
    )?;
    let decision = crate::inspect::status_on_disk(config).decision;
    if !decision.crash && scope != Scope::Usage {
        writeln!(
            out,
            "Note: crash reports stay off: {}",
            decision.crash_reason
        )?;
    }
    if !decision.usage && scope != Scope::Crash {
        writeln!(out, "Note: usage pings stay off: {}", decision.usage_reason)?;
    }
    Ok(())
}

fn disable(config: &Config, scope: Scope, out: &mut dyn Write) -> Result<(), Failure> {
    let done = control::disable_with(config, scope, ConsentSource::Cli)?;
    writeln!(out, "{} off for {}.", what(scope), config.app_name)?;
    if done.outbox_deleted > 0 {
        writeln!(
            out,
            "Deleted {} crash report(s) waiting to be sent.",
            done.outbox_deleted
        )?;
    }
    // An id that was never sent needs no word: a first `disable` prints one line.
    if done.id_rotated && (done.deletion_sent || done.deletion_pending) {
        writeln!(out, "The anonymous id was replaced by a new one.")?;
    }
    if done.deletion_sent {
        writeln!(
            out,
            "A request to delete the data sent under the old id was sent."
        )?;
    } else if done.deletion_pending {
        writeln!(
            out,
            "A request to delete the data sent under the old id will be sent by {} at its next start.",
            config.app_name
        )?;
    }
    Ok(())
}

fn settings_cmd(
    config: &Config,
    json: bool,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Failure> {
    let reset = matches!(args, [only] if only == "reset");
    // Check every pair before touching any file (loading may repair a corrupt one).
    let changes = if reset {
        Vec::new()
    } else {
        let changes = args
            .iter()
            .map(|a| settings::parse_assignment(a))
            .collect::<Result<Vec<_>, _>>()?;
        for (key, value) in &changes {
            settings::validate_change(key, value)?;
        }
        changes
    };
    let mut settings = Settings::load(config)?;
    let path = settings.path().to_owned();
    if let Some(r) = settings.recovered() {
        // stderr: stdout stays parseable with --json.
        writeln!(
            err,
            "note: {} was unreadable ({}); moved to {}; defaults are used",
            path.display(),
            r.problem,
            r.moved_to.display()
        )?;
    }
    if reset {
        settings.reset()?;
    } else if !changes.is_empty() {
        settings.update_via(changes, ConsentSource::Cli)?;
        // A "no" here has the effects of `disable`: what waits is deleted now.
        let no = crate::gate::recorded_no(settings.data());
        crate::control::forget_waiting(&crate::paths::Paths::of(config), no.crash, no.usage);
    }
    if json {
        writeln!(out, "{}", pretty(&settings.to_json()))?;
    } else {
        writeln!(out, "# {}", path.display())?;
        writeln!(out, "{}", pretty(&settings.to_json()))?;
    }
    Ok(())
}

fn preview(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let preview = crate::inspect::preview(config).map_err(|e| Failure {
        code: EXIT_FAILED,
        message: e.to_string(),
    })?;
    if json {
        let value = serde_json::json!({
            "usage": {"format": preview.usage_format, "body": preview.usage},
            "crash": preview.crash,
            "native_crash": preview.native_crash,
            "minidump": preview.minidump,
            "scrubbed": preview.scrubbed,
        });
        writeln!(out, "{}", pretty(&value))?;
        return Ok(());
    }
    writeln!(
        out,
        "A usage ping from this machine ({} format), exactly as it would be sent:",
        preview.usage_format
    )?;
    writeln!(out, "{}", pretty(&preview.usage))?;
    writeln!(out)?;
    writeln!(out, "A crash report from this machine, after scrubbing:")?;
    writeln!(out, "{}", pretty(&preview.crash))?;
    writeln!(out)?;
    writeln!(
        out,
        "Removed from the crash report before it would leave this machine:"
    )?;
    writeln!(out, "{}", preview.scrubbed)?;
    if !preview.native_crash.is_null() {
        writeln!(
            out,
            "A crash that is not a panic (here a SIGSEGV), as it would be reported at the next start:"
        )?;
        writeln!(out, "{}", pretty(&preview.native_crash))?;
        writeln!(out, "{}", preview.minidump)?;
        writeln!(out)?;
    }
    writeln!(out, "Nothing was sent.")?;
    Ok(())
}

impl From<crate::review::ReviewError> for Failure {
    fn from(e: crate::review::ReviewError) -> Failure {
        use crate::review::ReviewError;
        let code = match e {
            ReviewError::NotFound(_) | ReviewError::Ambiguous(_) | ReviewError::TooShort(_) => {
                EXIT_USAGE
            }
            _ => EXIT_FAILED,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn pending(config: &Config, json: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let waiting = crate::review::waiting_reports(config);
    let usage = crate::review::waiting_usage(config);
    if json {
        for w in &waiting {
            let line = serde_json::json!({
                "id": w.id, "captured_at": w.captured_at, "kind": "crash",
                "kept_locally": w.kept_locally, "title": w.title, "size": w.size,
            });
            writeln!(out, "{line}")?;
        }
        for u in &usage {
            let line = serde_json::json!({
                "captured_at": u.recorded_at, "kind": "usage", "events": u.events,
                "names": u.names, "size": u.size,
            });
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    pending_usage(config, &usage, out)?;
    if waiting.is_empty() {
        writeln!(out, "No crash report is waiting.")?;
        return Ok(());
    }
    for w in &waiting {
        writeln!(
            out,
            "{}  {}  {:<12} {:>7} bytes  {}",
            &w.id[..8.min(w.id.len())],
            w.captured_at,
            if w.kept_locally {
                "crash, local"
            } else {
                "crash"
            },
            w.size,
            w.title
        )?;
    }
    writeln!(
        out,
        "{} waiting. '{cmd} show ID' prints one as it would be sent; '{cmd} send ID' or \
         '{cmd} discard ID' decides.",
        waiting.len(),
        cmd = config.command()
    )?;
    Ok(())
}

/// The usage batches of `pending`: one line each, sent in the background, not one by one.
fn pending_usage(
    config: &Config,
    usage: &[crate::review::WaitingUsage],
    out: &mut dyn Write,
) -> Result<(), Failure> {
    for u in usage {
        let names = u.names.join(", ");
        writeln!(
            out,
            "usage     {}  {:<12} {:>7} bytes  {} event{}: {}",
            u.recorded_at,
            "usage",
            u.size,
            u.events,
            if u.events == 1 { "" } else { "s" },
            crate::bound::cut(&names, 80)
        )?;
    }
    if !usage.is_empty() {
        writeln!(
            out,
            "{} usage batch{} waiting, sent in the background; '{} disable --usage' deletes {}.",
            usage.len(),
            if usage.len() == 1 { "" } else { "es" },
            config.command(),
            if usage.len() == 1 { "it" } else { "them" },
        )?;
    }
    Ok(())
}

fn show(config: &Config, id: &str, out: &mut dyn Write) -> Result<(), Failure> {
    let w = crate::review::find_report(config, id)?;
    writeln!(out, "{}", pretty(&w.event))?;
    Ok(())
}

fn chosen(
    config: &Config,
    id: Option<&str>,
    all: bool,
) -> Result<Vec<crate::review::Waiting>, Failure> {
    if all {
        return Ok(crate::review::waiting_reports(config));
    }
    Ok(vec![crate::review::find_report(config, id.unwrap_or(""))?])
}

fn send(config: &Config, id: Option<&str>, all: bool, out: &mut dyn Write) -> Result<(), Failure> {
    let reports = chosen(config, id, all)?;
    let mut sent = 0;
    for r in &reports {
        crate::review::send(config, r)?;
        sent += 1;
    }
    writeln!(
        out,
        "Sent {sent} report(s). '{} log' shows them.",
        config.command()
    )?;
    Ok(())
}

fn discard(
    config: &Config,
    id: Option<&str>,
    all: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let reports = chosen(config, id, all)?;
    let n = crate::review::discard(config, &reports);
    writeln!(out, "Deleted {n} report(s) without sending them.")?;
    Ok(())
}

fn export(
    config: &Config,
    id: &str,
    to: &std::path::Path,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let w = crate::review::find_report(config, id)?;
    crate::review::export(&w, to)?;
    writeln!(
        out,
        "Wrote report {} (scrubbed, as it would be sent) to {}.",
        w.id,
        to.display()
    )?;
    Ok(())
}

fn log(
    config: &Config,
    last: Option<usize>,
    json: bool,
    full: bool,
    outbox: bool,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    if outbox {
        let reports = crate::inspect::pending_reports(config);
        if reports.is_empty() && !json {
            writeln!(out, "No crash report is waiting in the outbox.")?;
        }
        let skip = last.map_or(0, |n| reports.len().saturating_sub(n));
        for r in reports.iter().skip(skip) {
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&r.event).unwrap_or_default()
                )?;
            } else {
                writeln!(out, "# {}", r.path.display())?;
                writeln!(out, "{}", pretty(&r.event))?;
            }
        }
        return Ok(());
    }
    let Some(path) = crate::paths::Paths::of(config).audit_log() else {
        writeln!(out, "no data directory: nothing was recorded")?;
        return Ok(());
    };
    let records = crate::audit::read(&path);
    let skip = last.map_or(0, |n| records.len().saturating_sub(n));
    if records.is_empty() && !json {
        writeln!(out, "Nothing was sent yet ({} is empty).", path.display())?;
    }
    for record in records.iter().skip(skip) {
        if json {
            writeln!(out, "{}", serde_json::to_string(record).unwrap_or_default())?;
        } else {
            let status = record["status"].as_u64().map_or_else(
                || {
                    record["note"]
                        .as_str()
                        .map_or_else(|| "kept".to_owned(), |n| format!("no answer: {n}"))
                },
                |s| s.to_string(),
            );
            writeln!(
                out,
                "{}  {:<8} {} -> {}  {}",
                record["time"].as_str().unwrap_or("?"),
                record["kind"].as_str().unwrap_or("?"),
                record["destination"].as_str().unwrap_or("?"),
                status,
                record_title(&record["payload"])
            )?;
            if full {
                writeln!(out, "{}", pretty(&record["payload"]))?;
            }
        }
    }
    Ok(())
}

/// A short title for an audit record's payload: the error, the message, or the usage
/// events' names.
fn record_title(payload: &Value) -> String {
    let events = payload["events"]
        .as_array()
        .or_else(|| payload["batch"].as_array())
        .or_else(|| payload.as_array());
    if let Some(events) = events {
        let names: Vec<&str> = events
            .iter()
            .filter_map(|e| e["name"].as_str().or_else(|| e["event"].as_str()))
            .take(5)
            .collect();
        let more = events.len().saturating_sub(names.len());
        let mut t = names.join(", ");
        if more > 0 {
            t.push_str(&format!(" and {more} more"));
        }
        return t;
    }
    crate::review::title_of(payload)
}

/// Options of `scrub`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScrubOptions {
    pub(crate) report: bool,
    pub(crate) keep_going: bool,
    pub(crate) users: Vec<String>,
    pub(crate) hostnames: Vec<String>,
    pub(crate) rules: Vec<PathBuf>,
}

/// `scrub`: every line of every input (stdin when there are no files) is one Sentry event.
/// Scrubbed events are written one per line in the same order; an event the engine cannot
/// scrub is written as `null` (fail closed); a malformed line is an error naming its line
/// number, nothing is written for it, and the run stops there unless `keep_going`. A line
/// longer than 64 MiB (the engine's limit on one string) is such an error too, with `null`
/// written in its place; it is skipped without being held in memory. Lines are scrubbed on
/// every core (see [`scrub_stream`]).
pub(crate) fn scrub_files(
    files: &[PathBuf],
    options: &ScrubOptions,
    config: Option<&Config>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let scrubber = match scrubber_for(options, config) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut inputs: Vec<(String, Box<dyn BufRead>)> = Vec::new();
    if files.is_empty() {
        inputs.push((
            "<stdin>".to_owned(),
            Box::new(std::io::BufReader::with_capacity(
                READ_BUFFER,
                std::io::stdin(),
            )),
        ));
    }
    for f in files {
        match std::fs::File::open(f) {
            Ok(file) => inputs.push((
                f.display().to_string(),
                Box::new(std::io::BufReader::with_capacity(READ_BUFFER, file)),
            )),
            Err(e) => {
                let _ = writeln!(err, "error: cannot read {}: {e}", f.display());
                return EXIT_FAILED;
            }
        }
    }
    let scrub = |event: &mut Value| scrubber.scrub_value(event).map_err(|e| e.to_string());
    scrub_stream(inputs, &scrub, options, out, err)
}

/// The engine's side of `scrub`, given as a function so tests can make it fail.
type ScrubFn<'a> = dyn Fn(&mut Value) -> Result<crate::scrub::Report, String> + Sync + 'a;

/// The longest line `scrub` reads, without its end of line: the engine's cap on one string
/// (64 MiB). A longer line is an error; it is skipped without being held in memory.
const MAX_LINE_BYTES: usize = 64 << 20;
/// The read buffer of each input.
const READ_BUFFER: usize = 256 << 10;
/// A chunk of lines handed to one worker ends after this many bytes...
const CHUNK_BYTES: usize = 1 << 20;
/// ... or this many lines, so that small events too spread over the workers.
const CHUNK_LINES: usize = 256;
/// Bytes of input read but not yet written, beyond the chunk being read: with the number of
/// chunks in flight, this bounds the memory `scrub` uses.
const IN_FLIGHT_BYTES: usize = 16 << 20;

/// One line as read, for a worker.
enum Item {
    /// The line's bytes, without its end of line.
    Line { lineno: usize, bytes: Vec<u8> },
    /// A line that could not be read; `null` is written in its place when `null` is set.
    Unreadable {
        lineno: usize,
        problem: String,
        null: bool,
    },
}

/// Consecutive lines of one input.
struct Chunk {
    input: usize,
    items: Vec<Item>,
    bytes: usize,
}

/// What a worker made of a chunk: the text to write to stdout and to stderr, in order.
struct Done {
    out: Vec<u8>,
    err: Vec<u8>,
    report: crate::scrub::Report,
    bad: usize,
    /// A bad line without `keep_going`: nothing after this chunk is written.
    stop: bool,
    bytes: usize,
}

impl Done {
    /// A line that cannot be scrubbed: counted and said (with `null` written in its place
    /// when `null`). Returns whether the run stops here (no `keep_going`).
    fn reject(
        &mut self,
        name: &str,
        lineno: usize,
        problem: &str,
        null: bool,
        keep_going: bool,
    ) -> bool {
        if null {
            self.out.extend_from_slice(b"null\n");
            let _ = writeln!(
                self.err,
                "error: {name}: line {lineno}: {problem}; wrote null"
            );
        } else {
            let _ = writeln!(self.err, "error: {name}: line {lineno}: {problem}");
        }
        self.bad += 1;
        self.stop = !keep_going;
        self.stop
    }
}

/// How reading one line ended.
enum Got {
    Eof,
    Line,
    TooLong,
}

/// Reads one line into `buf` (cleared first, end of line removed), holding at most
/// `MAX_LINE_BYTES + 1` bytes of it: a longer line is [`Got::TooLong`], with its rest unread.
fn read_line_capped(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<Got> {
    use std::io::Read;
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = input.take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Got::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Got::Line);
    }
    if n as u64 == limit {
        // No end of line within the limit: free what was read of it.
        *buf = Vec::new();
        return Ok(Got::TooLong);
    }
    // The last line, without an end of line.
    Ok(Got::Line)
}

/// Reads the inputs chunk by chunk.
struct Lines {
    inputs: Vec<Box<dyn BufRead>>,
    current: usize,
    lineno: usize,
    keep_going: bool,
    /// A line that ends the run was read: nothing more is.
    stopped: bool,
}

impl Lines {
    /// The next chunk: lines of one input, `None` when every input is read.
    fn next_chunk(&mut self) -> Option<Chunk> {
        while !self.stopped && self.current < self.inputs.len() {
            let mut chunk = Chunk {
                input: self.current,
                items: Vec::new(),
                bytes: 0,
            };
            let mut next_input = false;
            while chunk.items.len() < CHUNK_LINES && chunk.bytes < CHUNK_BYTES {
                let input = &mut self.inputs[self.current];
                let mut bytes = Vec::new();
                let got = read_line_capped(input.as_mut(), &mut bytes);
                self.lineno += 1;
                let lineno = self.lineno;
                match got {
                    Ok(Got::Eof) => {
                        next_input = true;
                        break;
                    }
                    Ok(Got::Line) => {
                        chunk.bytes += bytes.len() + 1;
                        chunk.items.push(Item::Line { lineno, bytes });
                    }
                    Ok(Got::TooLong) => {
                        chunk.items.push(Item::Unreadable {
                            lineno,
                            problem: format!("longer than {} MiB, the limit", MAX_LINE_BYTES >> 20),
                            null: true,
                        });
                        if !self.keep_going {
                            self.stopped = true;
                            break;
                        }
                        // Skip the rest of the line through the read buffer.
                        if let Err(e) = input.skip_until(b'\n') {
                            chunk.items.push(Item::Unreadable {
                                lineno,
                                problem: e.to_string(),
                                null: false,
                            });
                            next_input = true;
                            break;
                        }
                    }
                    Err(e) => {
                        chunk.items.push(Item::Unreadable {
                            lineno,
                            problem: e.to_string(),
                            null: false,
                        });
                        // A read error ends this input (reading on could fail forever).
                        self.stopped = !self.keep_going;
                        next_input = true;
                        break;
                    }
                }
            }
            if next_input {
                self.current += 1;
                self.lineno = 0;
            }
            if !chunk.items.is_empty() {
                return Some(chunk);
            }
        }
        None
    }
}

/// Parses, scrubs and serialises the lines of a chunk (a worker's job).
fn scrub_chunk(chunk: Chunk, name: &str, scrub: &ScrubFn<'_>, keep_going: bool) -> Done {
    let mut done = Done {
        out: Vec::with_capacity(chunk.bytes + chunk.bytes / 8),
        err: Vec::new(),
        report: crate::scrub::Report::new(),
        bad: 0,
        stop: false,
        bytes: chunk.bytes,
    };
    for item in chunk.items {
        let (lineno, parsed) = match item {
            Item::Unreadable {
                lineno,
                problem,
                null,
            } => {
                if done.reject(name, lineno, &problem, null, keep_going) {
                    return done;
                }
                continue;
            }
            Item::Line { lineno, bytes } => {
                let parsed = match std::str::from_utf8(&bytes) {
                    Ok(line) if line.trim().is_empty() => continue,
                    // A byte order mark (a file saved by a Windows editor) is not JSON.
                    Ok(line) => match serde_json::from_str::<Value>(
                        line.strip_prefix('\u{feff}').unwrap_or(line),
                    ) {
                        Ok(event @ Value::Object(_)) => Ok(event),
                        Ok(_) => Err("expected a JSON object (a Sentry event)".to_owned()),
                        Err(e) => Err(format!("invalid JSON: {e}")),
                    },
                    Err(_) => Err("stream did not contain valid UTF-8".to_owned()),
                };
                (lineno, parsed)
            }
        };
        let mut event = match parsed {
            Ok(event) => event,
            Err(problem) => {
                if done.reject(name, lineno, &problem, false, keep_going) {
                    return done;
                }
                continue;
            }
        };
        let scrubbed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scrub(&mut event)))
            .unwrap_or_else(|_| Err("internal error".to_owned()));
        let start = done.out.len();
        // Fail closed: an event that cannot be scrubbed is written as null, never raw.
        let written = scrubbed.and_then(|report| {
            serde_json::to_writer(&mut done.out, &event)
                .map(|()| report)
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(report) => done.report.merge(report),
            Err(e) => {
                done.out.truncate(start);
                done.out.extend_from_slice(b"null");
                let _ = writeln!(
                    done.err,
                    "warning: {name}: line {lineno}: cannot scrub ({e}); wrote null"
                );
            }
        }
        done.out.push(b'\n');
    }
    done
}

/// Scrubs every line of every input; see [`scrub_files`].
///
/// Lines are read in chunks on this thread, scrubbed on one worker per core, and written
/// here in input order; the chunks in flight are bounded in number and bytes, and a line in
/// bytes (`MAX_LINE_BYTES`), so memory does not grow with the input.
fn scrub_stream(
    inputs: Vec<(String, Box<dyn BufRead>)>,
    scrub: &ScrubFn<'_>,
    options: &ScrubOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, mpsc};

    let (names, readers): (Vec<String>, Vec<Box<dyn BufRead>>) = inputs.into_iter().unzip();
    let mut lines = Lines {
        inputs: readers,
        current: 0,
        lineno: 0,
        keep_going: options.keep_going,
        stopped: false,
    };
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let max_chunks = 2 * workers + 1;
    let mut total = crate::scrub::Report::new();
    let mut bad = 0usize;
    let mut failed = false;
    let cancelled = AtomicBool::new(false);
    let (job_tx, job_rx) = mpsc::channel::<(usize, Chunk)>();
    let job_rx = Mutex::new(job_rx);
    std::thread::scope(|s| {
        // Owned here, so that returning closes the queue and the workers end.
        let job_tx = job_tx;
        let (done_tx, done_rx) = mpsc::channel::<(usize, Done)>();
        for _ in 0..workers {
            let (job_rx, done_tx, names, cancelled) =
                (&job_rx, done_tx.clone(), &names, &cancelled);
            let keep_going = options.keep_going;
            s.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((seq, chunk)) = job else { break };
                    if cancelled.load(Ordering::Relaxed) {
                        break;
                    }
                    let (name, bytes) = (names[chunk.input].as_str(), chunk.bytes);
                    // A bug must not leave the writer waiting for this chunk forever.
                    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        scrub_chunk(chunk, name, scrub, keep_going)
                    }))
                    .unwrap_or_else(|_| Done {
                        out: Vec::new(),
                        err: format!("error: {name}: internal error (scrubbing stopped)\n")
                            .into_bytes(),
                        report: crate::scrub::Report::new(),
                        bad: 1,
                        stop: true,
                        bytes,
                    });
                    if done_tx.send((seq, done)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let (mut sent, mut written, mut in_flight) = (0usize, 0usize, 0usize);
        let mut pending = std::collections::BTreeMap::new();
        let mut read_all = false;
        loop {
            while !read_all
                && (sent == written || (sent - written < max_chunks && in_flight < IN_FLIGHT_BYTES))
            {
                match lines.next_chunk() {
                    Some(chunk) => {
                        in_flight += chunk.bytes;
                        if job_tx.send((sent, chunk)).is_err() {
                            failed = true;
                            return;
                        }
                        sent += 1;
                    }
                    None => read_all = true,
                }
            }
            if written == sent {
                break;
            }
            let Ok((seq, done)) = done_rx.recv() else {
                // Every worker is gone (a bug): never leave the run looking complete.
                let _ = writeln!(err, "error: internal error (scrubbing stopped)");
                failed = true;
                return;
            };
            pending.insert(seq, done);
            while let Some(done) = pending.remove(&written) {
                written += 1;
                in_flight -= done.bytes;
                total.merge(done.report);
                bad += done.bad;
                if out.write_all(&done.out).is_err() {
                    failed = true;
                }
                let _ = err.write_all(&done.err);
                if done.stop || failed {
                    cancelled.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    });
    if out.flush().is_err() {
        failed = true;
    }
    if failed {
        return EXIT_FAILED;
    }
    if options.report {
        let _ = writeln!(err, "{total}");
    }
    if bad > 0 { EXIT_FAILED } else { EXIT_OK }
}

/// The scrubber for `scrub`: this machine's identity, the names given, and the app's salt
/// (a fresh one when no app is named, so hashes differ from any app's).
fn scrubber_for(
    options: &ScrubOptions,
    config: Option<&Config>,
) -> Result<crate::scrub::Scrubber, String> {
    let mut builder = crate::identity::Identity::current().builder();
    for u in &options.users {
        builder = builder.user(u.clone());
    }
    for h in &options.hostnames {
        builder = builder.hostname(h.clone());
    }
    let salt = config
        .and_then(|c| Settings::load(c).ok())
        .map(|s| s.data().salt.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    builder = builder.salt(salt.as_bytes());
    for path in &options.rules {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let pack = if path.extension().is_some_and(|e| e == "json") {
            crate::scrub::RulePack::from_json_str(&text)
        } else {
            crate::scrub::RulePack::from_toml_str(&text)
        }
        .map_err(|e| format!("{}: {e}", path.display()))?;
        // Compile the pack on its own first, so an error names the file it came from.
        crate::scrub::Scrubber::builder()
            .rule_pack(pack.clone())
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        builder = builder.rule_pack(pack);
    }
    if let Some(c) = config {
        for rule in &c.scrub_rules {
            builder = builder.rule(rule.clone());
        }
        for name in &c.scrub_disabled {
            builder = builder.disable_rule(name);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// The `consentry` binary's own arguments: which app, then a [`Command`].
///
/// ```
/// use clap::Parser;
/// let cli = consentry::cli::Standalone::parse_from(["consentry", "--app", "myapp", "status", "--json"]);
/// assert_eq!(cli.app.as_deref(), Some("myapp"));
/// ```
#[derive(Debug, clap::Parser)]
#[command(
    name = "consentry",
    version,
    about = "Inspect and control an app's consentry telemetry; scrub Sentry events",
    long_about = None,
    after_help = "Also: consentry scrub [--report] [--keep-going] [--user NAME] [--hostname NAME] [--rules FILE] [FILE...]\n  scrubs Sentry events (one JSON object per line) from stdin or files to stdout.\n\nExit codes: 0 done, 1 failed (I/O, malformed scrub input), 2 bad input (unknown setting, bad value)."
)]
pub struct Standalone {
    /// The app whose telemetry to manage (its consentry app name); not needed for `scrub`
    #[arg(long, global = true, value_name = "NAME")]
    pub app: Option<String>,
    /// The app's config directory (default: the OS config directory, or `<APP>_CONFIG_DIR`)
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// The app's data directory (default: the OS data directory, or `<APP>_DATA_DIR`)
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The app's Sentry DSN, to show where reports go (optional)
    #[arg(long, global = true, value_name = "DSN")]
    pub dsn: Option<String>,
    /// The app's consent policy (default: opt-out if the app has shown its first-run notice,
    /// which only opt-out apps do; else opt-in)
    #[arg(long, global = true, value_name = "POLICY")]
    pub policy: Option<PolicyArg>,
    /// The app allows reporting in CI
    #[arg(long, global = true)]
    pub allow_ci: bool,
    /// The app's consent group (`Config::consent_group`): its settings are the group's, so
    /// `disable` here stops every app of the group
    #[arg(long, global = true, value_name = "GROUP")]
    pub group: Option<String>,
    /// The command
    #[command(subcommand)]
    pub command: Command,
}

impl Standalone {
    /// Runs the `consentry` binary: builds a [`Config`] for `--app` and runs the command.
    ///
    /// ```no_run
    /// use clap::Parser;
    /// fn main() -> std::process::ExitCode {
    ///     consentry::cli::Standalone::parse().run()
    /// }
    /// ```
    pub fn run(&self) -> ExitCode {
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        ExitCode::from(self.run_with(&mut stdout.lock(), &mut stderr.lock()))
    }

    /// [`Standalone::run`] with explicit outputs; returns the exit code.
    ///
    /// ```
    /// use clap::Parser;
    /// let cli = consentry::cli::Standalone::parse_from(["consentry", "status"]);
    /// let (mut out, mut err) = (Vec::new(), Vec::new());
    /// assert_eq!(cli.run_with(&mut out, &mut err), consentry::cli::EXIT_USAGE); // no --app
    /// ```
    pub fn run_with(&self, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
        let Some(app) = &self.app else {
            if let Command::Scrub { files, .. } = &self.command {
                return scrub_files(files, &self.command.scrub_options(), None, out, err);
            }
            let _ = writeln!(err, "error: --app NAME is required for this command");
            return EXIT_USAGE;
        };
        let mut config =
            Config::new(app.clone(), "0.0.0").cli_command(format!("consentry --app {app}"));
        if let Some(dir) = &self.config_dir {
            config = config.config_dir(dir);
        }
        if let Some(dir) = &self.data_dir {
            config = config.data_dir(dir);
        }
        if let Some(dsn) = &self.dsn {
            config = config.dsn(dsn.clone());
        }
        if let Some(group) = &self.group {
            config = config.consent_group(group.clone());
        }
        if let Err(e) = crate::config::validate_app_name(app) {
            let _ = writeln!(err, "error: {e}");
            return EXIT_USAGE;
        }
        let policy = match self.policy {
            Some(PolicyArg::OptIn) => Policy::OptIn,
            Some(PolicyArg::OptOut) => Policy::OptOut,
            None if notice_was_shown(&config) => Policy::OptOut,
            None => Policy::OptIn,
        };
        config = config.policy(policy).allow_ci(self.allow_ci);
        config.standalone = true;
        if let Err(e) = config.validate() {
            let _ = writeln!(err, "error: {e}");
            return EXIT_USAGE;
        }
        run_with(&self.command, &config, out, err)
    }
}

/// `--policy` of the `consentry` binary (`Policy::OptIn`, `Policy::OptOut`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// Nothing is sent until the user says yes
    OptIn,
    /// Sent after a first-run notice unless the user says no
    OptOut,
}

/// Whether the app's settings file records a first-run notice (only opt-out apps show one).
/// Read without creating or repairing anything.
fn notice_was_shown(config: &Config) -> bool {
    let Some(path) = crate::paths::Paths::of(config).settings_file() else {
        return false;
    };
    crate::fsx::read_capped(&path, crate::fsx::SMALL_FILE_MAX)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|v| v.get("notice_shown_at").is_some_and(|t| !t.is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str) -> Vec<(String, Box<dyn BufRead>)> {
        vec![(
            "<test>".to_owned(),
            Box::new(std::io::Cursor::new(text.as_bytes().to_vec())),
        )]
    }

    #[test]
    fn an_event_that_cannot_be_scrubbed_is_written_as_null_in_its_place() {
        let fail_on_boom = |event: &mut Value| {
            if event.to_string().contains("boom") {
                Err("the engine gave up".to_owned())
            } else {
                event["seen"] = Value::from(true);
                Ok(crate::scrub::Report::new())
            }
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = scrub_stream(
            input("{\"n\":1}\n{\"boom\":2}\n{\"n\":3}\n"),
            &fail_on_boom,
            &ScrubOptions::default(),
            &mut out,
            &mut err,
        );
        assert_eq!(code, EXIT_OK);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"n\":1,\"seen\":true}\nnull\n{\"n\":3,\"seen\":true}\n"
        );
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains("line 2: cannot scrub (the engine gave up); wrote null"),
            "{err}"
        );
    }

    #[test]
    fn a_panicking_engine_also_gives_null() {
        let panics =
            |_: &mut Value| -> Result<crate::scrub::Report, String> { panic!("engine bug") };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = scrub_stream(
            input("{}\n"),
            &panics,
            &ScrubOptions::default(),
            &mut out,
            &mut err,
        );
        assert_eq!(code, EXIT_OK);
        assert_eq!(String::from_utf8(out).unwrap(), "null\n");
    }
}
