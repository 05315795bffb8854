//! The pipeline: every step an event goes through between the caller and the outbox, in
//! order, in one function ([`Pipeline::run`]), for errors, messages and panics alike. The
//! usage events' equivalent is [`Pipeline::usage`]. `preview` runs these same functions on a
//! sample, so what it shows is exactly what would be stored and sent.
//!
//! The output is [`Scrubbed`], which only this module can construct: the outbox and the
//! usage store accept nothing else, so nothing unscrubbed can be written, and so sent.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::config::{Config, Ignore};
use crate::facts::Facts;
use crate::report::{self, BREADCRUMBS, Captured, Enrichment, Kind, RawStack};
use crate::scrub::{Report, Scrubber};
use crate::sink::UsageRecord;
use crate::usage::{MAX_VALUE_LEN, Prop, Queued};

/// The largest event stored (Sentry accepts 1 MiB per event).
pub(crate) const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// A payload that went through the scrub step. Only this module can make one; its contents
/// can be read, never replaced.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scrubbed<T = Value>(T);

impl<T> Scrubbed<T> {
    pub(crate) fn get(&self) -> &T {
        &self.0
    }
}

impl Scrubbed<Value> {
    /// The envelope bytes of a scrubbed event.
    pub(crate) fn envelope(&self, event_id: Uuid) -> Vec<u8> {
        report::envelope_bytes(event_id, &self.0)
    }

    /// The event id the event carries.
    pub(crate) fn event_id(&self) -> Option<Uuid> {
        self.0
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
    }

    /// The same scrubbed event with a number in `extra` (a count carries no personal data),
    /// and, with `new_id`, a new event id.
    pub(crate) fn with_count(&self, key: &str, n: u64, new_id: Option<Uuid>) -> Scrubbed {
        let mut v = self.0.clone();
        set_extra(&mut v, key, Value::from(n));
        if let Some(id) = new_id {
            if let Some(obj) = v.as_object_mut() {
                obj.insert("event_id".into(), Value::from(id.simple().to_string()));
            }
            set_extra(
                &mut v,
                "consentry.repeat_of_earlier_report",
                Value::from(true),
            );
        }
        Scrubbed(v)
    }
}

/// Sets `event.extra[key]`. The app's hook may have left `extra` (or the event) something
/// other than an object; indexing would panic, so such an `extra` is replaced.
fn set_extra(event: &mut Value, key: &str, value: Value) {
    let Some(event) = event.as_object_mut() else {
        return;
    };
    let extra = event
        .entry("extra")
        .or_insert_with(|| Value::Object(Map::new()));
    if !extra.is_object() {
        *extra = Value::Object(Map::new());
    }
    if let Some(extra) = extra.as_object_mut() {
        extra.insert(key.to_owned(), value);
    }
}

impl Scrubbed<Vec<UsageRecord>> {
    /// Records read back from a file of the usage store, which only ever holds what
    /// [`Pipeline::usage`] made (the store's writer takes only `Scrubbed` records).
    pub(crate) fn from_usage_store(bytes: &[u8]) -> Option<Scrubbed<Vec<UsageRecord>>> {
        serde_json::from_slice(bytes).ok().map(Scrubbed)
    }
}

/// How a run treats the stack trace.
pub(crate) enum Stack<'a> {
    /// Symbolicate it (function, file, line).
    Symbolicate,
    /// Bare addresses: past a flush's deadline, or the panic report's first copy.
    Addresses,
    /// Made by the caller (symbolicated within a deadline on another thread), and only
    /// for an event that is kept: an ignored one or a repeat costs no symbolication.
    Later(MakeStack<'a>),
}

/// Makes the stack trace of a raw stack (see [`Stack::Later`]).
pub(crate) type MakeStack<'a> =
    Box<dyn FnOnce(&RawStack) -> Option<sentry::protocol::Stacktrace> + 'a>;

impl std::fmt::Debug for Stack<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stack::Symbolicate => "Symbolicate",
            Stack::Addresses => "Addresses",
            Stack::Later(_) => "Later",
        })
    }
}

/// What became of an event.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Scrubbed and ready to store; `dedup_key` when repeats of it are counted.
    Keep {
        event: Scrubbed,
        dedup_key: Option<String>,
        report: Report,
    },
    /// An ignore rule of the app matched, or the app's hook dropped it.
    Dropped,
    /// A repeat of a recent error: counted, not stored.
    Repeat,
    /// Scrubbing failed (or panicked): dropped, never sent raw.
    Failed(String),
}

/// Counts repeats (see [`crate::dedup`]).
pub(crate) trait Repeats {
    /// Whether `key` was seen within the window; counts it if so.
    fn is_repeat(&self, key: &str) -> bool;
}

/// What the pipeline needs besides the event: the app's config, facts, the scrubber.
pub(crate) struct Pipeline {
    config: Config,
    salt: String,
    session_id: Uuid,
    facts: OnceLock<Facts>,
    scrubber: OnceLock<Result<Scrubber, String>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

impl Pipeline {
    pub(crate) fn new(config: Config, salt: String, session_id: Uuid) -> Pipeline {
        Pipeline {
            config,
            salt,
            session_id,
            facts: OnceLock::new(),
            scrubber: OnceLock::new(),
        }
    }

    /// Builds the costly parts now (the worker does this at start, off the app's thread).
    pub(crate) fn warm_up(&self) {
        self.facts();
        let _ = self.scrubber();
    }

    /// Facts about this process, gathered once.
    pub(crate) fn facts(&self) -> &Facts {
        self.facts.get_or_init(|| {
            let env = crate::env::EnvSnapshot::from_process(&self.config.env_prefix());
            let ci = env.ci().map(|(_, vendor)| vendor);
            Facts::gather(ci, self.session_id)
        })
    }

    /// The scrubber for this process (identity, environment, salt, the app's rules), built
    /// once. `Err` when the app's rules do not compile: then every event is dropped.
    pub(crate) fn scrubber(&self) -> Result<&Scrubber, String> {
        self.scrubber
            .get_or_init(|| {
                let mut builder = crate::identity::Identity::current()
                    .builder()
                    .salt(self.salt.as_bytes());
                for rule in &self.config.scrub_rules {
                    builder = builder.rule(rule.clone());
                }
                for name in &self.config.scrub_disabled {
                    builder = builder.disable_rule(name);
                }
                builder.build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn enrichment(&self, anonymous_id: Uuid) -> Enrichment {
        Enrichment {
            app_name: self.config.app_name.clone(),
            app_version: self.config.app_version.clone(),
            environment: self.config.environment_name(),
            anonymous_id,
            facts: self.facts().clone(),
            report_ci: self.config.allow_ci,
        }
    }

    /// Every step, in order. Steps 1 and 2 ran on the caller's thread.
    ///
    ///  1. build the event (`report::event_from_error`, `_message`, `_panic`)
    ///  2. bound its sizes (`bound`: strings cut at token boundaries, chain and frames capped)
    ///  3. the app's ignore rules
    ///  4. deduplicate (errors and messages; a panic is always reported), on the types and
    ///     the raw stack: a repeat in a burst costs no symbolication
    ///  5. stack trace: symbolicate the raw backtrace (or keep bare addresses), and the
    ///     fingerprint the server groups by
    ///  6. breadcrumbs recorded up to the capture
    ///  7. enrich: tags, contexts, release, the anonymous id
    ///  8. scrub
    ///  9. the app's `before_send` hook
    /// 10. scrub again (a hook cannot put personal data back)
    /// 11. strip identifying fields (`server_name`, debug images, user fields but the id)
    pub(crate) fn run(
        &self,
        captured: Captured,
        stack: Stack<'_>,
        repeats: Option<&dyn Repeats>,
        anonymous_id: Uuid,
    ) -> Verdict {
        let Captured {
            mut event,
            backtrace,
            breadcrumb_seq,
            kind,
        } = captured;
        // 3.
        if self.ignored(&event) {
            return Verdict::Dropped;
        }
        // 4. Where it was captured: the raw stack, before step 5 consumes it.
        let dedup_key = (kind != Kind::Panic && repeats.is_some())
            .then(|| report::dedup_key(&event, backtrace.as_ref()));
        if let (Some(key), Some(repeats)) = (&dedup_key, repeats)
            && repeats.is_repeat(key)
        {
            return Verdict::Repeat;
        }
        // 5.
        if let Some(bt) = backtrace {
            let st = match stack {
                Stack::Symbolicate => report::stacktrace_from(&bt, Some(&self.config.app_name)),
                Stack::Addresses => report::stacktrace_unresolved(&bt),
                Stack::Later(make) => make(&bt),
            };
            attach_stacktrace(&mut event, st);
        }
        // 5b. grouping: the fingerprint the server groups by (unless the caller set one)
        let default_fp = event.fingerprint.is_empty()
            || (event.fingerprint.len() == 1 && event.fingerprint[0] == "{{ default }}");
        if default_fp && let Some(fp) = self.fingerprint(&event, kind) {
            event.fingerprint = fp.into_iter().map(Into::into).collect::<Vec<_>>().into();
        }
        // 6.
        event.breadcrumbs = BREADCRUMBS.up_to(breadcrumb_seq).into();
        // 7.
        self.enrichment(anonymous_id).apply(&mut event);
        let Ok(value) = serde_json::to_value(&event) else {
            return Verdict::Failed("the event could not be serialised".to_owned());
        };
        // 8.-11.
        match self.scrub_and_hook(value) {
            Ok(Some((event, report))) => Verdict::Keep {
                event,
                dedup_key,
                report,
            },
            Ok(None) => Verdict::Dropped,
            Err(e) => Verdict::Failed(e),
        }
    }

    /// The fingerprint the server groups this event by: the app's (`Config::fingerprint`),
    /// else, for an error, the outermost error's type and the function of the innermost
    /// in-app frame (its type alone when no frame is the app's), for a panic its location
    /// (`file:line`), for a message none (the server groups by the message). A message that
    /// holds a path or a number thus does not split one bug into many issues.
    fn fingerprint(
        &self,
        event: &sentry::protocol::Event<'static>,
        kind: Kind,
    ) -> Option<Vec<String>> {
        if let Some(f) = &self.config.fingerprint
            && let Ok(value) = serde_json::to_value(event)
            && let Ok(Some(fp)) = catch_unwind(AssertUnwindSafe(|| f(&value)))
            && !fp.is_empty()
        {
            return Some(
                fp.into_iter()
                    .take(8)
                    .map(|s| crate::bound::cut_owned(s, 256))
                    .collect(),
            );
        }
        let top = event.exception.last()?;
        if kind == Kind::Panic {
            let location = event
                .contexts
                .get("panic")
                .and_then(|c| match c {
                    sentry::protocol::Context::Other(map) => map.get("location"),
                    _ => None,
                })
                .and_then(|v| v.as_str())
                .map(|l| {
                    // file:line, without the column and without directories.
                    let mut parts = l.rsplitn(3, ':');
                    let _col = parts.next();
                    let line = parts.next().unwrap_or("");
                    let file = parts.next().unwrap_or(l);
                    let name = file.rsplit(['/', '\\']).next().unwrap_or(file);
                    format!("{name}:{line}")
                });
            return Some(vec!["panic".to_owned(), location.unwrap_or_default()]);
        }
        let function = top
            .stacktrace
            .as_ref()
            .and_then(|st| st.frames.iter().rev().find(|f| f.in_app == Some(true)))
            .and_then(|f| f.function.clone());
        let mut fp = vec![report::grouping_type(&top.ty).to_owned()];
        fp.extend(function);
        Some(fp)
    }

    /// Whether an app ignore rule drops the event.
    fn ignored(&self, event: &sentry::protocol::Event<'static>) -> bool {
        self.config.ignore.iter().any(|rule| match rule {
            Ignore::ErrorType(name) => event.exception.iter().any(|e| {
                e.ty == *name
                    || report::grouping_type(&e.ty) == name
                    || e.mechanism.as_ref().is_some_and(|m| {
                        m.data.get(report::IO_KIND_KEY).and_then(|k| k.as_str()) == Some(name)
                    })
            }),
            Ignore::MessageContains(needle) => {
                event
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains(needle.as_str()))
                    || event.exception.iter().any(|e| {
                        e.value
                            .as_deref()
                            .is_some_and(|v| v.contains(needle.as_str()))
                    })
            }
        })
    }

    /// Steps 8 to 11: scrub, the app's hook, scrub again, strip identifying fields. Any
    /// failure or panic is an `Err`: the event is dropped (fail closed). `Ok(None)`: the
    /// hook dropped it.
    fn scrub_and_hook(&self, value: Value) -> Result<Option<(Scrubbed, Report)>, String> {
        let scrubber = self
            .scrubber()
            .map_err(|e| format!("the scrubbing rules do not compile ({e})"))?;
        let scrub = |mut v: Value, report: &mut Report| -> Result<Value, String> {
            report.merge(scrubber.scrub_value(&mut v).map_err(|e| e.to_string())?);
            report::strip_identifying(&mut v);
            Ok(v)
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut report = Report::default();
            let v = scrub(value, &mut report)?;
            let v = match &self.config.before_send {
                None => v,
                Some(hook) => match hook(v) {
                    Some(v) if v.is_object() => scrub(v, &mut report)?,
                    Some(_) => {
                        return Err("the app's before_send hook returned a non-object".to_owned());
                    }
                    None => return Ok(None),
                },
            };
            // The hook may have made the event larger than anything the caller could: past
            // Sentry's own limit it would never be accepted, and it must not crowd the outbox.
            let size = serde_json::to_vec(&v)
                .map(|b| b.len())
                .unwrap_or(usize::MAX);
            if size > MAX_EVENT_BYTES {
                return Err(format!(
                    "the event is {size} bytes after the app's hook, over the {MAX_EVENT_BYTES}-byte limit"
                ));
            }
            Ok(Some((Scrubbed(v), report)))
        }));
        outcome.unwrap_or_else(|_| {
            Err("a panic in the scrubber or the app's before_send hook".to_owned())
        })
    }

    /// A usage event's steps: resolve each property (hash, scrub free strings, cut), give
    /// the event an id. `None` when a string cannot be scrubbed (fail closed).
    pub(crate) fn usage(&self, event: Queued) -> Option<Scrubbed<UsageRecord>> {
        let scrubber = self.scrubber().ok()?;
        let mut props = Map::new();
        for (key, prop) in event.props {
            let value = match prop {
                Prop::Str(s) => {
                    let (clean, _) = catch_unwind(AssertUnwindSafe(|| scrubber.scrub_text(&s)))
                        .ok()?
                        .ok()?;
                    Value::from(cut_chars(clean))
                }
                Prop::Choice(c) => Value::from(c),
                Prop::Hashed(raw) => Value::from(scrubber.hash(&raw)),
                Prop::Int(n) => Value::from(n),
                Prop::Float(x) => {
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                }
                Prop::Bool(b) => Value::from(b),
                // A kind of value this version does not know is not sent (fail closed).
                _ => continue,
            };
            props.insert(key, value);
        }
        let time = time::OffsetDateTime::from(event.time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let micros = event
            .time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        Some(Scrubbed(UsageRecord {
            id: Uuid::new_v4(),
            name: event.name,
            props,
            time,
            micros,
        }))
    }

    /// The static metadata sent with every usage event.
    pub(crate) fn usage_metadata(&self) -> Map<String, Value> {
        let f = self.facts();
        let mut m = Map::new();
        m.insert("app".into(), Value::from(self.config.app_name.clone()));
        m.insert(
            "app_version".into(),
            Value::from(self.config.app_version.clone()),
        );
        m.insert("os".into(), Value::from(f.os_name.clone()));
        m.insert("os_version".into(), Value::from(f.os_version.clone()));
        m.insert("arch".into(), Value::from(f.arch));
        m.insert("rust_version".into(), Value::from(f.rust_version));
        m.insert(
            "install_source".into(),
            Value::from(f.install_source.as_str()),
        );
        m.insert(
            "ci".into(),
            Value::from(f.ci.filter(|_| self.config.allow_ci).unwrap_or("none")),
        );
        m.insert("container".into(), Value::from(f.container));
        m.insert("wsl".into(), Value::from(f.wsl));
        m.insert("session_id".into(), Value::from(f.session_id.to_string()));
        m
    }
}

/// At most [`MAX_VALUE_LEN`] characters.
fn cut_chars(mut s: String) -> String {
    if let Some((i, _)) = s.char_indices().nth(MAX_VALUE_LEN) {
        s.truncate(i);
    }
    s
}

/// Puts a stack trace on the event's last exception (the error itself), or on the event.
fn attach_stacktrace(
    event: &mut sentry::protocol::Event<'static>,
    st: Option<sentry::protocol::Stacktrace>,
) {
    let Some(st) = st else { return };
    match event.exception.values.last_mut() {
        Some(top) => top.stacktrace = Some(st),
        None => event.stacktrace = Some(st),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(config: Config) -> Pipeline {
        Pipeline::new(config, "salt".into(), Uuid::new_v4())
    }

    fn captured(message: &str) -> Captured {
        Captured {
            event: report::event_from_message(message, sentry::Level::Error),
            backtrace: None,
            breadcrumb_seq: 0,
            kind: Kind::Message,
        }
    }

    struct Always(bool);
    impl Repeats for Always {
        fn is_repeat(&self, _: &str) -> bool {
            self.0
        }
    }

    #[test]
    fn steps_scrub_hook_and_scrub_again() {
        let config = Config::new("app", "1.0").before_send(|mut v| {
            // A hook that puts personal data back in is scrubbed again.
            v["extra"]["note"] = Value::from("mail alice@example.com");
            Some(v)
        });
        let p = pipeline(config);
        match p.run(
            captured("token ghp_0123456789abcdefghijklmnopqrstuvwxyz0123"),
            Stack::Addresses,
            Some(&Always(false)),
            Uuid::nil(),
        ) {
            Verdict::Keep {
                event, dedup_key, ..
            } => {
                let text = event.get().to_string();
                assert!(!text.contains("ghp_0123"), "{text}");
                assert!(!text.contains("alice@example.com"), "{text}");
                assert!(event.get().get("server_name").is_none());
                assert!(dedup_key.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn repeats_ignores_and_hooks_drop() {
        let p = pipeline(Config::new("app", "1.0"));
        assert!(matches!(
            p.run(
                captured("x"),
                Stack::Addresses,
                Some(&Always(true)),
                Uuid::nil()
            ),
            Verdict::Repeat
        ));
        let p = pipeline(Config::new("app", "1.0").ignore(Ignore::MessageContains("x".into())));
        assert!(matches!(
            p.run(captured("x"), Stack::Addresses, None, Uuid::nil()),
            Verdict::Dropped
        ));
        let p = pipeline(Config::new("app", "1.0").before_send(|_| Some(Value::from(1))));
        assert!(matches!(
            p.run(captured("x"), Stack::Addresses, None, Uuid::nil()),
            Verdict::Failed(_)
        ));
        #[allow(clippy::panic)]
        let p = pipeline(Config::new("app", "1.0").before_send(|_| panic!("hook bug")));
        assert!(matches!(
            p.run(captured("x"), Stack::Addresses, None, Uuid::nil()),
            Verdict::Failed(_)
        ));
    }

    #[test]
    fn an_ignore_rule_names_a_type_by_its_path_its_last_segment_or_an_io_errors_kind() {
        #[derive(Debug)]
        struct ParseErr(std::io::Error);
        impl std::fmt::Display for ParseErr {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot parse")
            }
        }
        impl std::error::Error for ParseErr {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let os = || std::io::Error::from_raw_os_error(2);
        let events = || {
            [
                report::event_from_error(&not_found()),
                report::event_from_error(&os()),
                report::event_from_error(&ParseErr(not_found())),
                report::event_from_error(&*Box::<dyn std::error::Error>::from(not_found())),
            ]
        };
        let dropped = |rule: &str, event| {
            let p = pipeline(Config::new("app", "1.0").ignore(Ignore::error_type(rule)));
            let captured = Captured {
                event,
                ..captured("x")
            };
            matches!(
                p.run(captured, Stack::Addresses, None, Uuid::nil()),
                Verdict::Dropped
            )
        };
        for event in events() {
            assert!(dropped("NotFound", event.clone()), "{:?}", event.exception);
            assert!(!dropped("Interrupted", event.clone()));
            assert!(dropped("std::io::Error", event));
        }
        let [.., chained, _] = events();
        assert!(dropped("ParseErr", chained.clone()), "the last segment");
        assert!(!dropped("Parse", chained));
    }

    #[test]
    fn only_a_kept_event_has_its_stack_trace_made() {
        // A burst of one error must not symbolicate every repeat: the hold that lets its
        // first occurrence go out with the count would end before the repeats are counted.
        let with_stack = || Captured {
            backtrace: Some(report::RawStack::capture()),
            ..captured("x")
        };
        let made = std::cell::Cell::new(0);
        let later = || {
            Stack::Later(Box::new(|bt: &RawStack| {
                made.set(made.get() + 1);
                report::stacktrace_unresolved(bt)
            }))
        };
        let p = pipeline(Config::new("app", "1.0"));
        let verdict = p.run(with_stack(), later(), Some(&Always(true)), Uuid::nil());
        assert!(matches!(verdict, Verdict::Repeat), "{verdict:?}");
        let p = pipeline(Config::new("app", "1.0").ignore(Ignore::MessageContains("x".into())));
        let verdict = p.run(with_stack(), later(), None, Uuid::nil());
        assert!(matches!(verdict, Verdict::Dropped), "{verdict:?}");
        assert_eq!(
            made.get(),
            0,
            "no stack trace for a repeat or an ignored event"
        );
        let p = pipeline(Config::new("app", "1.0"));
        let verdict = p.run(with_stack(), later(), Some(&Always(false)), Uuid::nil());
        let Verdict::Keep { event, .. } = verdict else {
            panic!("kept: {verdict:?}")
        };
        assert_eq!(made.get(), 1);
        assert!(
            event.get()["threads"].is_object() || event.get()["stacktrace"].is_object(),
            "{}",
            event.get()
        );
    }

    #[test]
    fn counts_keep_the_event_scrubbed() {
        let p = pipeline(Config::new("app", "1.0"));
        let Verdict::Keep { event, .. } = p.run(captured("x"), Stack::Addresses, None, Uuid::nil())
        else {
            panic!("kept")
        };
        let id = Uuid::new_v4();
        let repeat = event.with_count("consentry.occurrences", 5, Some(id));
        assert_eq!(repeat.event_id(), Some(id));
        assert_eq!(repeat.get()["extra"]["consentry.occurrences"], 5);
    }
}

#[cfg(test)]
mod fingerprint_tests {
    use super::*;

    fn run(config: Config, captured: Captured) -> Value {
        let p = Pipeline::new(config, "salt".into(), Uuid::nil());
        match p.run(captured, Stack::Addresses, None, Uuid::nil()) {
            Verdict::Keep { event, .. } => event.get().clone(),
            other => panic!("{other:?}"),
        }
    }

    #[derive(Debug)]
    struct LoadError(String);
    impl std::fmt::Display for LoadError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "settings file {} is invalid", self.0)
        }
    }
    impl std::error::Error for LoadError {}

    fn error(path: &str) -> Captured {
        let mut event = report::event_from_error(&LoadError(path.into()));
        // An in-app frame, as symbolication would give it.
        let mut st = sentry::protocol::Stacktrace::default();
        st.frames.push(sentry::protocol::Frame {
            function: Some("mytool::settings_file::load".into()),
            in_app: Some(true),
            ..Default::default()
        });
        if let Some(top) = event.exception.values.last_mut() {
            top.stacktrace = Some(st);
        }
        Captured {
            event,
            backtrace: None,
            breadcrumb_seq: 0,
            kind: Kind::Error,
        }
    }

    #[test]
    fn the_same_bug_from_two_machines_has_one_fingerprint() {
        let a = run(Config::new("app", "1.0"), error("/home/ann/data.conf"));
        let b = run(Config::new("app", "1.0"), error("bad.conf"));
        assert_eq!(a["fingerprint"], b["fingerprint"]);
        assert!(
            a["fingerprint"][1]
                .as_str()
                .unwrap()
                .contains("settings_file::load"),
            "{}",
            a["fingerprint"]
        );
    }

    /// The grouping key of one error is the same for `capture_error(&err)` and
    /// `capture_error(&*boxed)`; anyhow's boxed errors do not group by their message's
    /// first word.
    #[test]
    fn one_error_has_one_fingerprint_whichever_way_it_is_captured() {
        let with_frame = |mut event: sentry::protocol::Event<'static>| {
            if let Some(top) = event.exception.values.last_mut() {
                top.stacktrace = error("x").event.exception.values[0].stacktrace.clone();
            }
            Captured {
                event,
                backtrace: None,
                breadcrumb_seq: 0,
                kind: Kind::Error,
            }
        };
        let fp = |event| run(Config::new("app", "1.0"), with_frame(event))["fingerprint"].clone();
        let concrete = fp(report::event_from_error(&LoadError("a".into())));
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(LoadError("a".into()));
        assert_eq!(concrete, fp(report::event_from_dyn_error(&*boxed, None)));
        assert_eq!(concrete[0], "LoadError");
        let command: Box<dyn std::error::Error + Send + Sync> =
            anyhow::anyhow!("command failed: exit 1").into();
        assert_eq!(
            fp(report::event_from_dyn_error(&*command, None))[0],
            "Error"
        );
    }

    /// `capture_anyhow` with `RUST_BACKTRACE` set: the stack parsed from the error's own
    /// backtrace groups by the app's innermost function, as a raw stack does.
    #[test]
    fn an_anyhow_backtrace_groups_by_the_apps_innermost_function() {
        for text in [
            report::tests::STD_BACKTRACE_SHORT,
            report::tests::STD_BACKTRACE_FULL,
        ] {
            let mut captured = error("x");
            if let Some(top) = captured.event.exception.values.last_mut() {
                top.stacktrace = report::parsed_stacktrace(text, Some("advapp"));
            }
            let fp = &run(Config::new("advapp", "1.0"), captured)["fingerprint"];
            assert_eq!(fp[1], "advapp::run", "{fp}");
        }
    }

    #[test]
    fn panics_group_by_location_and_the_app_can_decide() {
        let panic = |loc: &str| Captured {
            event: report::event_from_panic("boom".into(), Some(loc.into()), None, None),
            backtrace: None,
            breadcrumb_seq: 0,
            kind: Kind::Panic,
        };
        let a = run(
            Config::new("app", "1.0"),
            panic("/home/ann/src/main.rs:49:5"),
        );
        assert_eq!(a["fingerprint"], serde_json::json!(["panic", "main.rs:49"]));
        let own = Config::new("app", "1.0").fingerprint(|_| Some(vec!["mine".into()]));
        assert_eq!(
            run(own, error("x"))["fingerprint"],
            serde_json::json!(["mine"])
        );
    }
}
