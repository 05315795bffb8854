//! The consent decision: whether crash reports and usage pings may be sent, and why.
//!
//! [`decide`] is a pure function of the environment snapshot, the settings and the config,
//! so every rule is covered by one table test. Any "no" wins:
//!
//! 1. `<APP>_TELEMETRY`: `0`/`false`/`off`/`no` turns everything off, `crash` allows crash
//!    reports only, `1`/`true`/`on`/`yes` counts as consent; anything else is off.
//! 2. `DO_NOT_TRACK` set to anything but empty, `0` or `false` turns everything off.
//! 3. Settings: unusable settings (no directory, unwritable) mean "undecided and cannot ask";
//!    `sync=false` turns everything off; `crash_reports=false` / `usage=false` one kind.
//! 4. CI turns everything off unless the app allows it.
//! 5. A non-zero distributed rank turns everything off; so does a project-level file
//!    `.<app>-telemetry` saying `off` at the root of the repository holding the working
//!    directory.
//! 6. The policy: opt-in needs a recorded "yes"; opt-out needs the first-run notice shown.

use std::fmt;
use std::io::IsTerminal;
use std::time::Duration;

use crate::config::{Config, Policy};
use crate::env::{EnvSnapshot, is_false_like, is_true_like};
use crate::settings::{ConsentSource, Mode, SettingsData};

/// Whether crash reports and usage pings may be sent in this process, with the reasons.
///
/// ```
/// let decision = consentry::current_decision();
/// // Without `init`, nothing is sent.
/// assert!(!decision.crash && !decision.usage);
/// println!("{decision}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Crash and error reports are recorded (and sent, unless `crash_mode` is local).
    pub crash: bool,
    /// Usage pings are recorded (and sent, unless `usage_mode` is local).
    pub usage: bool,
    /// What crash reports do: [`Mode::Off`] when `crash` is false; [`Mode::Local`] when
    /// they are kept on this machine only.
    pub crash_mode: Mode,
    /// What usage pings do; see `crash_mode`.
    pub usage_mode: Mode,
    /// Why `crash` is what it is, as a sentence (`disabled by DO_NOT_TRACK=1`).
    pub crash_reason: String,
    /// Why `usage` is what it is, as a sentence.
    pub usage_reason: String,
    /// Every rule that said no to crash reports, in order (the first is `crash_reason`).
    pub crash_reasons: Vec<String>,
    /// Every rule that said no to usage pings, in order.
    pub usage_reasons: Vec<String>,
    pub(crate) next: NextStep,
}

/// What the app may do about an undecided user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NextStep {
    /// Nothing: decided, or blocked by a rule.
    None,
    /// Opt-in, undecided, interactive: [`ask`](crate::ask) may prompt.
    Ask,
    /// Opt-in, undecided, but nobody to ask (not a terminal).
    CannotAsk,
    /// Opt-out, first run: print the notice and send nothing this run.
    Notice,
}

impl Decision {
    /// A decision that sends nothing, for one reason.
    pub(crate) fn off(reason: impl Into<String>) -> Decision {
        let reason = reason.into();
        Decision {
            crash: false,
            usage: false,
            crash_mode: Mode::Off,
            usage_mode: Mode::Off,
            crash_reason: reason.clone(),
            usage_reason: reason.clone(),
            crash_reasons: vec![reason.clone()],
            usage_reasons: vec![reason],
            next: NextStep::None,
        }
    }

    /// Whether [`ask`](crate::ask) would prompt (opt-in, undecided, stdin and stderr are
    /// terminals, and no rule says no).
    ///
    /// ```
    /// assert!(!consentry::current_decision().can_ask());
    /// ```
    pub fn can_ask(&self) -> bool {
        self.next == NextStep::Ask
    }

    /// Off only because nobody has decided yet (opt-in, or the opt-out notice pending).
    pub(crate) fn undecided(&self) -> bool {
        matches!(
            self.next,
            NextStep::Ask | NextStep::CannotAsk | NextStep::Notice
        ) || self.crash_reason == "disabled: no consent"
            || (!self.crash_reasons.is_empty()
                && self
                    .crash_reasons
                    .iter()
                    .all(|r| r.starts_with("disabled: no consent given yet")))
    }

    /// Whether nothing at all may be sent.
    ///
    /// ```
    /// assert!(consentry::current_decision().is_off());
    /// ```
    pub fn is_off(&self) -> bool {
        !self.crash && !self.usage
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "crash reports: {} ({})",
            self.crash_mode.as_str(),
            self.crash_reason
        )?;
        write!(
            f,
            "usage pings:   {} ({})",
            self.usage_mode.as_str(),
            self.usage_reason
        )
    }
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone)]
pub(crate) struct Inputs<'a> {
    /// The app's environment-variable prefix (`MYAPP`).
    pub(crate) prefix: &'a str,
    /// The command users type (`myapp telemetry`).
    pub(crate) command: &'a str,
    pub(crate) env: &'a EnvSnapshot,
    /// The settings, or why they cannot be used.
    pub(crate) settings: Result<&'a SettingsData, &'a str>,
    pub(crate) policy: Policy,
    pub(crate) allow_ci: bool,
    /// stdin and stderr are terminals.
    pub(crate) interactive: bool,
    /// The version of the notice the app shows now (`None`: do not compare).
    pub(crate) notice_version: Option<&'a str>,
}

/// Resolves the decision. Any "no" wins; see the module docs for the rules.
pub(crate) fn decide(inputs: &Inputs<'_>) -> Decision {
    let mut crash_no: Vec<String> = Vec::new();
    let mut usage_no: Vec<String> = Vec::new();
    // Set when something outside the settings file speaks for the user, so asking is moot.
    let mut blocked = false;
    let mut env_consent: Option<String> = None;

    let var = format!("{}_TELEMETRY", inputs.prefix);
    if let Some(value) = inputs.env.get(&var).filter(|v| !v.trim().is_empty()) {
        if is_false_like(value) {
            both_no(
                format!("disabled by {var}={value}"),
                &mut crash_no,
                &mut usage_no,
            );
            blocked = true;
        } else if value.trim().eq_ignore_ascii_case("crash") {
            usage_no.push(format!("disabled by {var}={value} (crash reports only)"));
            env_consent = Some(format!("enabled by {var}={value} (crash reports only)"));
        } else if value.trim().eq_ignore_ascii_case("usage") {
            crash_no.push(format!("disabled by {var}={value} (usage pings only)"));
            env_consent = Some(format!("enabled by {var}={value} (usage pings only)"));
        } else if is_true_like(value) {
            env_consent = Some(format!("enabled by {var}={value}"));
        } else {
            both_no(
                format!("disabled: unrecognised value {var}={value} (use 0, 1, crash or usage)"),
                &mut crash_no,
                &mut usage_no,
            );
            blocked = true;
        }
    }

    // A parent process's "no" for one kind (or both): it never turns anything on.
    for (name, value) in inputs.env.inherited_no() {
        let kinds: Vec<String> = value
            .split(',')
            .map(|k| k.trim().to_ascii_lowercase())
            .filter(|k| !k.is_empty())
            .collect();
        if kinds.is_empty() {
            continue;
        }
        let reason = format!("disabled by {name}={value} (inherited from the parent process)");
        let crash = kinds.iter().any(|k| k != "usage");
        let usage = kinds.iter().any(|k| k != "crash");
        if crash {
            crash_no.push(reason.clone());
        }
        if usage {
            usage_no.push(reason);
        }
        blocked |= crash && usage;
    }

    if let Some(value) = inputs.env.get("DO_NOT_TRACK") {
        let v = value.trim();
        if !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")) {
            both_no(
                format!("disabled by DO_NOT_TRACK={value}"),
                &mut crash_no,
                &mut usage_no,
            );
            blocked = true;
        }
    }

    if let Some(file) = inputs.env.project_opt_out() {
        both_no(
            format!("disabled by the project's file {}", file.display()),
            &mut crash_no,
            &mut usage_no,
        );
        blocked = true;
    }

    let settings = match inputs.settings {
        Ok(data) => Some(data),
        Err(why) => {
            both_no(
                format!("disabled: consent cannot be recorded ({why}), so nothing is sent"),
                &mut crash_no,
                &mut usage_no,
            );
            blocked = true;
            None
        }
    };
    if let Some(data) = settings {
        if !data.sync {
            // Said the way the user said it: a "no" at the prompt is not a setting they typed.
            let reason = match data.consent.via {
                Some(via)
                    if data.consent.decided
                        && !data.consent.granted
                        && via != ConsentSource::Cli =>
                {
                    format!(
                        "disabled: declined {}{}",
                        via.describe(inputs.command, false),
                        on_date(data.consent.date())
                    )
                }
                Some(via) if data.consent.decided && !data.consent.granted => format!(
                    "disabled by sync=false in the settings (declined {}{})",
                    via.describe(inputs.command, false),
                    on_date(data.consent.date())
                ),
                _ => "disabled by sync=false in the settings".to_owned(),
            };
            both_no(reason, &mut crash_no, &mut usage_no);
            blocked = true;
        }
        if data.crash_reports.is_off() {
            crash_no.push("disabled by crash_reports=false in the settings".to_owned());
        }
        if data.usage.is_off() {
            usage_no.push("disabled by usage=false in the settings".to_owned());
        }
    }

    if let Some((ci_var, vendor)) = inputs.env.ci()
        && !inputs.allow_ci
    {
        both_no(
            format!("disabled: CI detected ({ci_var}, {vendor})"),
            &mut crash_no,
            &mut usage_no,
        );
        blocked = true;
    }

    if let Some((rank_var, rank)) = inputs.env.nonzero_rank() {
        both_no(
            format!("disabled: distributed rank {rank_var}={rank} (only rank 0 reports)"),
            &mut crash_no,
            &mut usage_no,
        );
        blocked = true;
    }

    // Asking or announcing only makes sense when some kind could still be turned on.
    let askable = !blocked && (crash_no.is_empty() || usage_no.is_empty());
    let mut next = NextStep::None;
    // A "yes" (or a shown notice) under another version of the notice no longer counts;
    // a "no" always does.
    let outdated =
        settings.is_some_and(
            |d| match (d.notice_version.as_deref(), inputs.notice_version) {
                (Some(recorded), Some(current)) => !covers(recorded, current),
                _ => false,
            },
        );
    let consent = settings.map(|d| &d.consent);
    let granted: Option<String> = if let Some(reason) = env_consent {
        Some(reason)
    } else {
        match (inputs.policy, consent) {
            (_, None) => None,
            (_, Some(c)) if c.decided && !c.granted => {
                let via = c.via.unwrap_or(ConsentSource::Api);
                let reason = format!(
                    "disabled: declined {}{}",
                    via.describe(inputs.command, false),
                    on_date(c.date())
                );
                both_no(reason, &mut crash_no, &mut usage_no);
                None
            }
            (Policy::OptIn, Some(c))
                if c.decided && c.via != Some(ConsentSource::Default) && !outdated =>
            {
                let via = c.via.unwrap_or(ConsentSource::Api);
                Some(format!(
                    "enabled: consent given {}{}",
                    via.describe(inputs.command, true),
                    on_date(c.date())
                ))
            }
            (Policy::OptIn, Some(_)) => {
                let reason = format!(
                    "disabled: no consent given yet (opt-in); '{} enable' turns it on",
                    inputs.command
                );
                both_no(reason, &mut crash_no, &mut usage_no);
                if askable {
                    let asked_lately = settings
                        .and_then(|d| d.prompt_unanswered_at.as_deref())
                        .is_some_and(within_a_day);
                    next = if inputs.interactive && inputs.env.ci().is_none() && !asked_lately {
                        NextStep::Ask
                    } else {
                        NextStep::CannotAsk
                    };
                }
                None
            }
            (Policy::OptOut, Some(c))
                if c.decided && c.via != Some(ConsentSource::Default) && !outdated =>
            {
                let via = c.via.unwrap_or(ConsentSource::Api);
                Some(format!(
                    "enabled: consent given {}{}",
                    via.describe(inputs.command, true),
                    on_date(c.date())
                ))
            }
            (Policy::OptOut, Some(_)) => {
                match settings
                    .and_then(|d| d.notice_shown_at.as_deref())
                    .filter(|_| !outdated)
                {
                    Some(at) => Some(format!(
                        "enabled: opt-out policy, notice shown{}; '{} disable' turns it off",
                        on_date(at.get(..10)),
                        inputs.command
                    )),
                    None => {
                        both_no(
                        "disabled for this run: first-run notice (opt-out); reporting starts with the next run".to_owned(),
                        &mut crash_no,
                        &mut usage_no,
                    );
                        if askable {
                            next = NextStep::Notice;
                        }
                        None
                    }
                }
            }
        }
    };

    let resolve = |no: Vec<String>| -> (bool, String, Vec<String>) {
        match (no.first(), &granted) {
            (Some(first), _) => (false, first.clone(), no),
            (None, Some(yes)) => (true, yes.clone(), no),
            (None, None) => (
                false,
                "disabled: no consent".to_owned(),
                vec!["disabled: no consent".to_owned()],
            ),
        }
    };
    let (crash, mut crash_reason, crash_reasons) = resolve(crash_no);
    let (usage, mut usage_reason, usage_reasons) = resolve(usage_no);
    // On means as the settings say: sent, or kept on this machine (`local`).
    let mode = |on: bool, set: Option<Mode>, reason: &mut String| {
        if !on {
            return Mode::Off;
        }
        match set {
            Some(Mode::Local) => {
                reason.push_str("; kept on this machine only (local mode): nothing is sent");
                Mode::Local
            }
            _ => Mode::On,
        }
    };
    let crash_mode = mode(crash, settings.map(|d| d.crash_reports), &mut crash_reason);
    let usage_mode = mode(usage, settings.map(|d| d.usage), &mut usage_reason);
    Decision {
        crash,
        usage,
        crash_mode,
        usage_mode,
        crash_reason,
        usage_reason,
        crash_reasons,
        usage_reasons,
        next,
    }
}

/// [`decide`] for `config`'s app.
pub(crate) fn decide_for(
    config: &Config,
    env: &EnvSnapshot,
    settings: Result<&SettingsData, &str>,
    interactive: bool,
) -> Decision {
    let version = notice_version(config);
    decide(&Inputs {
        prefix: &config.env_prefix(),
        command: &config.command(),
        env,
        settings,
        policy: config.policy,
        allow_ci: config.allow_ci,
        interactive,
        notice_version: version.as_deref(),
    })
}

/// The environment a child process needs to keep this process's "no": `DO_NOT_TRACK=1` and
/// `<APP>_TELEMETRY=0` when nothing may be recorded (a rule or the user said no, not merely
/// undecided); `<PREFIX>_TELEMETRY_OFF=crash` (`usage`, `crash,usage`) for each prefix (the
/// app's, then its consent group's) when a kind is off or kept locally. A "yes" is never
/// exported: the child decides with its own settings.
pub(crate) fn child_vars(prefixes: &[String], d: &Decision) -> Vec<(String, String)> {
    let sends = |on: bool, mode: Mode| on && mode == Mode::On;
    if !d.crash && !d.usage {
        return match prefixes.first() {
            Some(app) if d.next == NextStep::None && !d.undecided() => vec![
                (format!("{app}_TELEMETRY"), "0".to_owned()),
                ("DO_NOT_TRACK".to_owned(), "1".to_owned()),
            ],
            _ => Vec::new(),
        };
    }
    let off: Vec<&str> = [
        (!sends(d.crash, d.crash_mode)).then_some("crash"),
        (!sends(d.usage, d.usage_mode)).then_some("usage"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if off.is_empty() {
        return Vec::new();
    }
    prefixes
        .iter()
        .map(|p| (format!("{p}_{}", crate::env::INHERITED_NO), off.join(",")))
        .collect()
}

/// Whether an RFC 3339 time is less than a day ago (a time in the future counts as now).
fn within_a_day(at: &str) -> bool {
    let Ok(t) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
    else {
        return false;
    };
    let age = time::OffsetDateTime::now_utc() - t;
    age < time::Duration::days(1)
}

/// Records a "no" for both kinds.
fn both_no(reason: String, crash_no: &mut Vec<String>, usage_no: &mut Vec<String>) {
    crash_no.push(reason.clone());
    usage_no.push(reason);
}

fn on_date(date: Option<&str>) -> String {
    date.map(|d| format!(" on {d}")).unwrap_or_default()
}

/// Whether this process is running the app's `telemetry` subcommand (the last word of
/// [`Config::cli_command`], `telemetry` by default, among the arguments before any `--`).
/// Then `init` starts nothing and shows no notice, and `ask` asks nothing: a user's first
/// `mytool telemetry disable` must print one line, not a consent prompt.
pub(crate) fn running_telemetry_command(config: &Config) -> bool {
    let command = config.command();
    let Some(word) = command.split_whitespace().last() else {
        return false;
    };
    if command.split_whitespace().count() < 2 {
        // The `consentry` binary itself, or an app whose command is its own name.
        return false;
    }
    std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .take(32)
        .any(|a| a == word)
}

/// Whether a person is at this terminal: stdin and stderr are terminals.
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// What is collected and what never is, for the prompt and the notice.
pub(crate) fn disclosure(config: &Config) -> String {
    let command = config.command();
    let prefix = config.env_prefix();
    let app = &config.app_name;
    let mut text = String::new();
    let crash_dest = match config.parsed_dsn() {
        Some(dsn) => format!("sent to {}", dsn.host()),
        None => "kept on this machine: no server is configured".to_owned(),
    };
    text.push_str(&format!(
        "{app} can report crashes and errors ({crash_dest}){}.\n",
        match &config.usage_sink {
            Some(sink) => format!(" and send anonymous usage statistics to {}", sink.host()),
            None => String::new(),
        }
    ));
    text.push_str(&format!(
        "  Sent with each report: {}.\n",
        REPORT_FIELDS.join(", ")
    ));
    if config.usage_sink.is_some() {
        let events = if config.usage_events.is_empty() {
            "the actions the app reports".to_owned()
        } else {
            config.usage_events.join(", ")
        };
        text.push_str(&format!(
            "  Usage events: {events}, with the values the app attaches and the same context.\n"
        ));
    }
    text.push_str(
        "  Never sent: your user name, host name, home paths, IP address, environment values,\n  \
         secrets, file contents or command-line arguments; they are removed on this machine.\n",
    );
    text.push_str(&format!(
        "  See what is sent with '{command} log'; turn it off any time with '{command} disable',\n  \
         {prefix}_TELEMETRY=0 or DO_NOT_TRACK=1.\n"
    ));
    if let Some(url) = &config.privacy_url {
        text.push_str(&format!("  Privacy statement: {url}\n"));
    }
    text
}

/// What a crash report carries, as the notice lists it. A change here changes the notice's
/// version (see [`notice_version`]).
pub(crate) const REPORT_FIELDS: &[&str] = &[
    "the error message and its causes",
    "a stack trace",
    "for a crash that is not a panic, the signal and the kind of fault address",
    "the build ids and file names of the program and its libraries",
    "breadcrumbs (recent log messages, scrubbed)",
    "app version",
    "OS and version",
    "CPU architecture",
    "Rust version",
    "how the app was installed",
    "container or WSL",
    "the program's file name",
    "a random install id",
];

/// The version of the disclosure this app shows now: a hash of what it says is collected,
/// the app's usage event catalog and what a report carries, so it changes whenever either
/// does. Consent given, or a notice shown, under another version does not count: the
/// app must show the new notice (opt-out) or ask again (opt-in). A "no" stays a "no".
pub(crate) fn notice_version(config: &Config) -> Option<String> {
    // The `consentry` binary does not know the app's catalog: what it records counts for
    // any version (`None`), as files from before versions do.
    if config.standalone {
        return None;
    }
    // What is collected and whether it leaves the machine, nothing else: not the app's
    // name, command or hosts, so members of a consent group share one version. Two parts,
    // `reports/usage`: an app that sends no usage (`-`) is covered by a consent given for
    // the reports alone. An app without a DSN keeps its reports on the machine, and says
    // so; the version that adds a DSN asks again, so that nothing kept under the first
    // notice is uploaded by it.
    let fnv = |text: &str| {
        // FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    };
    let reports = fnv(&format!(
        "{}\n{}",
        REPORT_FIELDS.join("\n"),
        if config.dsn.is_some() { "sent" } else { "kept" }
    ));
    let usage = if config.usage_sink.is_some() {
        let mut events = config.usage_events.clone();
        events.sort_unstable();
        fnv(&format!("usage\n{}", events.join("\n")))
    } else {
        "-".to_owned()
    };
    Some(format!("{reports}/{usage}"))
}

/// Whether a consent recorded under notice version `recorded` covers what an app showing
/// version `current` collects: the same reports, and, if it sends usage, the same events.
fn covers(recorded: &str, current: &str) -> bool {
    let (r_reports, r_usage) = recorded.split_once('/').unwrap_or((recorded, ""));
    let (c_reports, c_usage) = current.split_once('/').unwrap_or((current, ""));
    r_reports == c_reports && (c_usage == "-" || r_usage == c_usage)
}

/// The opt-out first-run notice.
pub(crate) fn notice(config: &Config) -> String {
    format!("{}  Nothing was sent during this run.", disclosure(config))
}

/// Reads one line from stdin, waiting at most `timeout`. `None` on timeout, end of input or
/// error.
pub(crate) fn read_line_timeout(timeout: Duration) -> Option<String> {
    #[cfg(unix)]
    {
        if !stdin_ready(timeout) {
            return None;
        }
        let mut line = String::new();
        match std::io::stdin().read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }
    #[cfg(not(unix))]
    {
        // Without poll(2), read on a helper thread; on timeout it is left blocked on stdin.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("consentry-prompt".into())
            .spawn(move || {
                let mut line = String::new();
                if let Ok(n) = std::io::stdin().read_line(&mut line)
                    && n > 0
                {
                    let _ = tx.send(line);
                }
            })
            .ok()?;
        rx.recv_timeout(timeout).ok()
    }
}

/// Waits until stdin has input (a whole line, on a terminal in canonical mode) or `timeout`.
#[cfg(unix)]
#[allow(unsafe_code)]
fn stdin_ready(timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = libc::pollfd {
            fd: libc::STDIN_FILENO,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `fds` is a valid, initialised pollfd and we pass a count of exactly one.
        let n = unsafe { libc::poll(&mut fds, 1, ms) };
        if n > 0 {
            return fds.revents & (libc::POLLIN | libc::POLLHUP) != 0;
        }
        if n == 0 {
            return false;
        }
        // Interrupted by a signal: try again with the time left.
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            || left.is_zero()
        {
            return false;
        }
    }
}

/// Interprets an answer to the y/N prompt: only an explicit yes is yes.
pub(crate) fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests;
