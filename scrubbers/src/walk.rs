//! Walking a JSON value: learning identities from it, then scrubbing every string and key,
//! then chasing any identity that scrubbing uncovered in one more walk.
//!
//! Both walks are iterative, with an explicit stack, so that arbitrarily deep values cannot
//! overflow the thread's stack.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde_json::{Map, Value};

use crate::error::ScrubError;
use crate::identity::{self, IdentityMatcher, Learned};
use crate::inner::{Ctx, Hits, Inner};
use crate::keys;
use crate::report::Report;
use crate::validate;

/// Strings up to this long are remembered when clean, so that the field names and function
/// names that repeat through an event are scrubbed once.
const MEMO_MAX: usize = 256;

/// FxHash: the memo's keys are short and not adversarial in any way that matters (a collision
/// costs time, never correctness, since keys are compared in full).
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// One step of a field path.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index,
}

/// Paths longer than this many steps are shown by their ends only, so that a deeply nested
/// value costs neither quadratic time nor memory in its report.
const PATH_ENDS: usize = 12;

fn format_path(path: &[Seg<'_>]) -> String {
    let mut out = String::new();
    if path.len() > 2 * PATH_ENDS {
        let head = path.get(..PATH_ENDS).unwrap_or(&[]);
        let tail = path.get(path.len() - PATH_ENDS..).unwrap_or(&[]);
        out.push_str(&format_path(head));
        out.push_str(".….");
        out.push_str(format_path(tail).trim_start_matches('.'));
        return out;
    }
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index => out.push_str("[]"),
        }
    }
    out
}

enum Children<'a> {
    Object(serde_json::map::IterMut<'a>),
    Array(std::slice::IterMut<'a, Value>),
}

struct Frame<'a> {
    children: Children<'a>,
    /// The key rule whose match put this subtree under redaction, if any.
    denied: Option<usize>,
    /// Whether entering this frame pushed a path segment.
    has_segment: bool,
}

/// Whether a field holds the machine's name as a whole: `server_name` (which sentry-rust
/// fills with the hostname) and `contexts.device.name`. Their values are replaced whole,
/// however short or common the name (`vm`, `ubuntu`).
fn is_hostname_field(path: &[Seg<'_>]) -> bool {
    matches!(
        path,
        [Seg::Key("server_name")]
            | [Seg::Key("contexts"), Seg::Key("device"), Seg::Key("name")]
            | [Seg::Key("tags"), Seg::Key("device.name")]
    )
}

/// Whether a field holds a person's name as a whole: Sentry's `user.name`.
fn is_person_field(path: &[Seg<'_>]) -> bool {
    matches!(path, [Seg::Key("user"), Seg::Key("name")])
}

/// Learns identities from every string and key of `root`.
fn learn(inner: &Inner, root: &Value, learned: &mut Learned) {
    let mut stack: Vec<&Value> = vec![root];
    while let Some(value) = stack.pop() {
        match value {
            // Too long to scrub: the walk fails on it anyway.
            Value::String(s) if s.len() > crate::MAX_STRING_BYTES => {}
            Value::String(s) => inner.learn(s, learned),
            Value::Array(items) => {
                // `[["HOSTNAME", "x"], ["USER", "y"]]`: tags, headers and environments as
                // lists of pairs teach what the same entries of a map do.
                if let [Value::String(key), Value::String(value)] = items.as_slice() {
                    identity::learn_from_entry(key, value, learned);
                }
                stack.extend(items.iter().rev());
            }
            Value::Object(map) => {
                for (key, child) in map {
                    inner.learn(key, learned);
                    if let Value::String(s) = child {
                        identity::learn_from_entry(key, s, learned);
                    }
                    stack.push(child);
                }
            }
            Value::Bool(_) | Value::Null | Value::Number(_) => {}
        }
    }
    // A device's name, in the `device` context or in any context of type `device`.
    if let Some(Value::Object(contexts)) = root.get("contexts") {
        for (key, context) in contexts {
            let device =
                key == "device" || context.get("type").and_then(Value::as_str) == Some("device");
            if device && let Some(Value::String(name)) = context.get("name") {
                identity::learn_host(name, learned);
            }
        }
    }
    // The user's own name (`user.name`) wherever else it is written.
    if let Some(Value::String(name)) = root.pointer("/user/name") {
        learned.push_user(name.trim());
    }
}

fn add_hits(total: &mut Hits, hits: &Hits) {
    for &(rule, count) in hits {
        match total.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, sum)) => *sum += count,
            None => total.push((rule, count)),
        }
    }
}

/// What a map key's name says about the strings under it.
#[derive(Clone, Copy)]
enum KeyClass {
    /// A client's network address (`ip_address`, `X-Forwarded-For`).
    Address,
    /// Always a secret (`otp`, `creds`), unless the value is harmless.
    Secret,
    /// A secret if the value looks like one (`SIGNING_KEY`).
    MaybeSecret,
    Other,
}

/// A remembered scrub: the result (`None` if unchanged) and what each rule redacted.
struct Memo {
    result: Option<Box<str>>,
    hits: Hits,
}

/// How many times at most an event is walked: scrubbing can uncover an identity that the
/// original text hid (`HOSTNAME=bob-----BEGIN PRIVATE KEY...` names `bob` only once the key is
/// gone), and each new one is chased in one more walk over the strings that hold it.
pub(crate) const MAX_ROUNDS: usize = 4;

/// Per-walk state shared by every string of one event.
struct Walk<'s> {
    inner: &'s Inner,
    ctx: Ctx<'s>,
    /// After the first walk: only strings where this finds a newly learned identity need
    /// another look.
    filter: Option<&'s IdentityMatcher>,
    report: Report,
    hits: Hits,
    /// What scrubbing a string gave, for strings seen before in this event: the field names,
    /// function names and paths that repeat from frame to frame are scrubbed once.
    memo: HashMap<Box<str>, Memo, FxBuild>,
    /// Key rule per key, for keys seen before.
    key_rules: HashMap<Box<str>, Option<usize>, FxBuild>,
    /// What each key seen before names.
    key_names: HashMap<Box<str>, KeyClass, FxBuild>,
    /// Identities in strings as scrubbing left them.
    uncovered: Learned,
}

/// Scrubs `root` in place.
pub(crate) fn scrub_value(inner: &Inner, root: &mut Value) -> Result<Report, ScrubError> {
    let mut pem_report = Report::new();
    if let Some(rule) = inner.enabled_rule("pem-private-key") {
        split_keys(inner, rule, root, &mut pem_report);
    }
    format_log_entries(root);
    let mut known = Learned::default();
    learn(inner, root, &mut known);
    let mut learned = inner.learned_matcher(&known)?;
    let mut filter: Option<IdentityMatcher> = None;
    let mut report = Report::new();
    for round in 0..MAX_ROUNDS {
        let mut walk = Walk {
            inner,
            ctx: inner.ctx(learned.as_ref()),
            filter: filter.as_ref(),
            report: Report::new(),
            hits: Hits::new(),
            memo: HashMap::with_capacity_and_hasher(128, FxBuild::default()),
            key_rules: HashMap::with_capacity_and_hasher(64, FxBuild::default()),
            key_names: HashMap::with_capacity_and_hasher(64, FxBuild::default()),
            uncovered: Learned::default(),
        };
        walk.run(root)?;
        let uncovered = std::mem::take(&mut walk.uncovered);
        report.merge(walk.report);
        report.merge(std::mem::take(&mut pem_report));
        let added = known.absorb(uncovered);
        let Some(new_filter) = inner.learned_matcher(&added)? else {
            return Ok(report);
        };
        if round + 1 == MAX_ROUNDS {
            break;
        }
        learned = inner.learned_matcher(&known)?;
        filter = Some(new_filter);
    }
    Err(ScrubError::Unstable {
        path: String::new(),
        passes: MAX_ROUNDS,
    })
}

/// A log entry's parameters (`logentry.params`, and the older `message.params`) are filled
/// into its message by the server, where a secret among them would stand next to the words
/// that name it (`password=%s`) but is never seen beside them here. So the message is
/// formatted here (`formatted`, unless the event has one), scrubbed as one string, and the
/// parameters are dropped.
fn format_log_entries(root: &mut Value) {
    for key in ["logentry", "message"] {
        let Some(Value::Object(entry)) = root.get_mut(key) else {
            continue;
        };
        let Some(params) = entry.remove("params") else {
            continue;
        };
        let has_formatted = matches!(entry.get("formatted"), Some(Value::String(_)));
        if let (false, Some(Value::String(message))) = (has_formatted, entry.get("message")) {
            let formatted = format_message(message, &params);
            entry.insert("formatted".to_owned(), Value::String(formatted));
        }
    }
}

/// At most this many bytes of parameters are filled into one message; past them the
/// placeholders stay as they are (a thousand `{0}` of a 10 KB parameter would make 10 MB).
const FILLED_MAX: usize = 64 * 1024;

/// The start of `s`, at most `n` bytes, cut at a character boundary.
fn window(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Fills `params` into `message` as Python's `%` formatting and `str.format` do (`%s`,
/// `%(name)s`, `%5.2f`, `%%`, `{}`, `{0}`, `{name}`); a placeholder without a parameter
/// stays, and so does every one past [`FILLED_MAX`] bytes of parameters. Linear in the
/// message: each placeholder is looked for within a few bytes of where it starts.
fn format_message(message: &str, params: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let positional = |i: usize| match params {
        Value::Array(items) => items.get(i).map(text),
        _ => None,
    };
    let named = |name: &str| match params {
        Value::Object(map) => map.get(name).map(text),
        _ => None,
    };
    let mut out = String::with_capacity(message.len());
    let mut next = 0;
    let mut filled = 0;
    let mut rest = message;
    while let Some(at) = rest.find(['%', '{']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (consumed, value) = if let Some(after) = tail.strip_prefix("%%") {
            out.push('%');
            rest = after;
            continue;
        } else if let Some(after) = tail.strip_prefix("%(") {
            match window(after, 65).find(')') {
                Some(close) => {
                    let spec =
                        window(&after[close + 1..], 9).find(|c: char| c.is_ascii_alphabetic());
                    match spec {
                        Some(n) => (2 + close + 1 + n + 1, named(&after[..close])),
                        None => (1, None),
                    }
                }
                _ => (1, None),
            }
        } else if let Some(after) = tail.strip_prefix('%') {
            let spec = window(after, 9)
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | ' ' | '#')));
            match spec.and_then(|n| after[n..].chars().next().map(|c| (n, c))) {
                Some((n, c)) if "sdifrxXuoeEgGca".contains(c) => {
                    next += 1;
                    (1 + n + 1, positional(next - 1))
                }
                _ => (1, None),
            }
        } else {
            match window(tail, 67).find('}') {
                Some(close) => {
                    let field = tail[1..close].split(':').next().unwrap_or("");
                    let value = if field.is_empty() {
                        next += 1;
                        positional(next - 1)
                    } else if let Ok(i) = field.parse::<usize>() {
                        positional(i)
                    } else {
                        named(field)
                    };
                    (close + 1, value)
                }
                _ => (1, None),
            }
        };
        match value {
            Some(v) if filled + v.len() <= FILLED_MAX => {
                filled += v.len();
                out.push_str(&v);
            }
            _ => out.push_str(&tail[..consumed]),
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    out
}

/// Whether a line could be part of a PEM key's body: base64, maybe in quotes or a string
/// literal with a comma or `\n`, 16 characters or more.
fn is_key_body_line(line: &str) -> bool {
    let t = line
        .trim()
        .trim_end_matches(',')
        .trim_end_matches(['+', ';'])
        .trim()
        .trim_matches(['"', '\'', '`']);
    let t = t.strip_suffix("\\n").unwrap_or(t);
    let t = t.strip_suffix("\\r").unwrap_or(t);
    t.len() >= 16
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

fn opens_key(line: &str) -> bool {
    line.contains("-----BEGIN") && line.contains("PRIVATE KEY") && !line.contains("-----END")
}

/// A PEM private key split over several strings: the lines of a frame's `pre_context`,
/// `context_line` and `post_context`, consecutive breadcrumb messages, or the items of any
/// array of strings. The string with `-----BEGIN ... PRIVATE KEY-----` is scrubbed by the
/// `pem-private-key` rule itself; the body lines that follow it, up to the end marker or
/// the first line that is not base64, are replaced here.
fn split_keys(inner: &Inner, rule: usize, root: &mut Value, report: &mut Report) {
    let mut stack: Vec<&mut Value> = vec![root];
    let mut count = 0u64;
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                let is_frame = map.contains_key("context_line")
                    || map.contains_key("pre_context")
                    || map.contains_key("post_context");
                let is_crumbs = map
                    .get("values")
                    .and_then(Value::as_array)
                    .is_some_and(|v| v.iter().any(|c| c.get("message").is_some()));
                if is_frame || is_crumbs {
                    let mut lines: Vec<&mut String> = Vec::new();
                    let (mut pre, mut line, mut post, mut values) = (None, None, None, None);
                    for (k, v) in map.iter_mut() {
                        match k.as_str() {
                            "pre_context" => pre = Some(v),
                            "context_line" => line = Some(v),
                            "post_context" => post = Some(v),
                            "values" => values = Some(v),
                            _ => stack.push(v),
                        }
                    }
                    for part in [pre, line, post] {
                        match part {
                            Some(Value::String(s)) => lines.push(s),
                            Some(Value::Array(items)) => {
                                lines.extend(items.iter_mut().filter_map(|v| match v {
                                    Value::String(s) => Some(s),
                                    _ => None,
                                }));
                            }
                            _ => {}
                        }
                    }
                    if let Some(Value::Array(crumbs)) = values {
                        for crumb in crumbs.iter_mut() {
                            if let Value::Object(c) = crumb {
                                for (k, v) in c.iter_mut() {
                                    match (k.as_str(), v) {
                                        ("message", Value::String(s)) => lines.push(s),
                                        (_, v) => stack.push(v),
                                    }
                                }
                            } else {
                                stack.push(crumb);
                            }
                        }
                    } else if let Some(v) = values {
                        stack.push(v);
                    }
                    count += redact_key_bodies(inner, rule, lines);
                } else {
                    stack.extend(map.values_mut());
                }
            }
            Value::Array(items) => {
                if items.iter().any(|v| v.as_str().is_some_and(opens_key)) {
                    let lines: Vec<&mut String> = items
                        .iter_mut()
                        .filter_map(|v| match v {
                            Value::String(s) => Some(s),
                            _ => None,
                        })
                        .collect();
                    count += redact_key_bodies(inner, rule, lines);
                } else {
                    stack.extend(items.iter_mut());
                }
            }
            _ => {}
        }
    }
    if count > 0 {
        report.add(inner.rule_name(rule), "", count);
    }
}

/// Replaces the body lines that follow a line opening a private key; returns how many.
fn redact_key_bodies(inner: &Inner, rule: usize, lines: Vec<&mut String>) -> u64 {
    let mut open = false;
    let mut count = 0;
    for line in lines {
        if open {
            if line.contains("-----END") || !is_key_body_line(line) {
                open = false;
            } else {
                if let Some(new) = inner.redact_whole(rule, line) {
                    *line = new;
                    count += 1;
                }
                continue;
            }
        }
        if opens_key(line) {
            open = true;
        }
    }
    count
}

impl Walk<'_> {
    fn run(&mut self, root: &mut Value) -> Result<(), ScrubError> {
        let mut path: Vec<Seg<'_>> = Vec::new();
        let mut stack: Vec<Frame<'_>> = Vec::new();
        self.visit(root, None, None, &mut path, &mut stack)?;
        while let Some(frame) = stack.last_mut() {
            let denied = frame.denied;
            let next = match &mut frame.children {
                Children::Object(iter) => iter.next().map(|(k, v)| (Seg::Key(k.as_str()), v)),
                Children::Array(iter) => iter.next().map(|v| (Seg::Index, v)),
            };
            match next {
                None => {
                    if stack.pop().is_some_and(|f| f.has_segment) {
                        path.pop();
                    }
                }
                Some((seg, child)) => {
                    let denied = match (denied, seg) {
                        (Some(rule), _) => Some(rule),
                        (None, Seg::Key(key)) => self.key_rule_for(key),
                        (None, Seg::Index) => None,
                    };
                    let key = match seg {
                        Seg::Key(key) => Some(key),
                        Seg::Index => None,
                    };
                    path.push(seg);
                    if !self.visit(child, key, denied, &mut path, &mut stack)? {
                        path.pop();
                    }
                }
            }
        }
        Ok(())
    }

    fn key_rule_for(&mut self, key: &str) -> Option<usize> {
        if let Some(rule) = self.key_rules.get(key) {
            return *rule;
        }
        let rule = self.inner.key_rule_for(key);
        if key.len() <= MEMO_MAX {
            self.key_rules.insert(key.into(), rule);
        }
        rule
    }

    /// Scrubs one string (a value or a key); `Err` carries the number of passes made.
    fn scrub_str(&mut self, text: &str) -> Result<Option<String>, usize> {
        if let Some(memo) = self.memo.get(text) {
            add_hits(&mut self.hits, &memo.hits);
            return Ok(memo.result.as_deref().map(str::to_owned));
        }
        let mut hits = Hits::new();
        let skip = self.filter.is_some_and(|f| !f.matches(text));
        let result = if skip {
            None
        } else {
            self.inner.scrub_str(&self.ctx, text, &mut hits)?
        };
        if let Some(new) = &result {
            self.inner.learn(new, &mut self.uncovered);
        }
        add_hits(&mut self.hits, &hits);
        if text.len() <= MEMO_MAX {
            self.memo.insert(
                text.into(),
                Memo {
                    result: result.as_deref().map(Box::from),
                    hits,
                },
            );
        }
        Ok(result)
    }

    fn record(&mut self, path: &[Seg<'_>], suffix: &str) {
        if self.hits.is_empty() {
            return;
        }
        let mut path = format_path(path);
        path.push_str(suffix);
        self.inner.record(&self.hits, &path, &mut self.report);
        self.hits.clear();
    }

    fn unstable(path: &[Seg<'_>], passes: usize) -> ScrubError {
        crate::inner::str_error(format_path(path), passes)
    }

    /// Scrubs a leaf, or pushes a frame for a container. Returns whether a frame was pushed.
    fn visit<'a>(
        &mut self,
        value: &'a mut Value,
        key: Option<&str>,
        denied: Option<usize>,
        path: &mut Vec<Seg<'a>>,
        stack: &mut Vec<Frame<'a>>,
    ) -> Result<bool, ScrubError> {
        match value {
            Value::String(s) => {
                let denied = denied
                    .or_else(|| {
                        is_hostname_field(path)
                            .then(|| self.inner.hostname_rule())
                            .flatten()
                    })
                    .or_else(|| {
                        is_person_field(path)
                            .then(|| self.inner.enabled_rule("deny-key"))
                            .flatten()
                    });
                if let Some(rule) = denied {
                    if let Some(new) = self.inner.redact_whole(rule, s) {
                        *s = new;
                        self.hits.push((rule, 1));
                    }
                } else {
                    match self.scrub_str(s) {
                        Ok(Some(new)) => {
                            if let Some(key) = key {
                                identity::learn_from_entry(key, &new, &mut self.uncovered);
                            }
                            *s = new;
                        }
                        Ok(None) => {}
                        Err(passes) => return Err(Self::unstable(path, passes)),
                    }
                    // Judged on the scrubbed value, so that a second scrub judges the same.
                    if let Some(key) = key
                        && let Some(rule) = self.secret_by_name(key, s)
                        && let Some(new) = self.inner.redact_whole(rule, s)
                    {
                        *s = new;
                        self.hits.push((rule, 1));
                    }
                }
                self.record(path, "");
                Ok(false)
            }
            Value::Number(n) => {
                // A card number stored as a JSON number, an integer or a whole float
                // (`4111111111111111.0`, `4.111111111111111e15`).
                let whole = n.as_u64().or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && (1e12..1e20).contains(f))
                        .map(|f| f as u64)
                });
                let card = whole
                    .filter(|v| *v >= 1_000_000_000_000 && validate::is_card_number(&v.to_string()))
                    .and_then(|_| self.inner.enabled_rule("credit-card"));
                if let Some(rule) = denied.or(card)
                    && n.as_u64() != Some(0)
                {
                    *value = Value::from(0);
                    self.hits.push((rule, 1));
                    self.record(path, "");
                }
                Ok(false)
            }
            Value::Object(map) => {
                self.scrub_keys(map, path)?;
                stack.push(Frame {
                    children: Children::Object(map.iter_mut()),
                    denied,
                    has_segment: !path.is_empty(),
                });
                Ok(true)
            }
            Value::Array(items) => {
                if denied.is_none() {
                    self.redact_pair(items, path);
                    self.redact_argv(items, path);
                    self.redact_client_argv(items, path);
                }
                stack.push(Frame {
                    children: Children::Array(items.iter_mut()),
                    denied,
                    has_segment: !path.is_empty(),
                });
                Ok(true)
            }
            Value::Bool(_) | Value::Null => Ok(false),
        }
    }

    /// The rule that redacts a string under `key` by the key's name and the value's look,
    /// for names beyond the deny list: ones that always name a secret (`otp`, `creds`,
    /// `x_forwarded_for`) unless the value is harmless (`false`, `<YOUR_KEY>`), and ones that
    /// may (`ENCRYPTION_KEY`, `stripeToken`) when the value looks random.
    fn secret_by_name(&mut self, key: &str, value: &str) -> Option<usize> {
        if key.len() > 64 || value.is_empty() || value.len() > 4096 {
            return None;
        }
        let class = match self.key_names.get(key) {
            Some(class) => *class,
            None => {
                let class = if keys::is_ip_key(key) {
                    KeyClass::Address
                } else if keys::is_secret_key(key) || keys::is_secret_map_key(key) {
                    KeyClass::Secret
                } else if keys::is_weak_secret_key(key) {
                    KeyClass::MaybeSecret
                } else {
                    KeyClass::Other
                };
                self.key_names.insert(key.into(), class);
                class
            }
        };
        let secret = match class {
            // An address under a key that names a client's address goes whatever it is,
            // loopback included (`"ip_address": "127.0.0.1"`); so does a name there
            // (`"X-Forwarded-For": "localhost"`), but not a placeholder (`{{auto}}`).
            KeyClass::Address => {
                if value.trim().parse::<std::net::IpAddr>().is_ok() {
                    return self.inner.enabled_rule("ipv4");
                }
                !validate::harmless_value(value)
            }
            KeyClass::Secret => !validate::harmless_value(value),
            KeyClass::MaybeSecret => validate::looks_secret(value),
            KeyClass::Other => false,
        };
        if !secret {
            return None;
        }
        self.inner.enabled_rule("deny-key")
    }

    /// `["mysql", "-u", "root", "-pX"]`, `["sshpass", "-p", "X", ...]`: the password flags of
    /// command-line clients in an argument list (see the `client-password-flag` rule for
    /// the same in a command line).
    fn redact_client_argv(&mut self, items: &mut [Value], path: &[Seg<'_>]) {
        const GLUED: &[&str] = &[
            "mysql",
            "mysqldump",
            "mysqladmin",
            "mariadb",
            "mariadb-dump",
            "mysqlimport",
            "mysqlshow",
            "mysqlcheck",
            "7z",
            "7za",
        ];
        let Some(rule) = self.inner.enabled_rule("client-password-flag") else {
            return;
        };
        let Some(Value::String(program)) = items.first() else {
            return;
        };
        let tool = program
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or("")
            .trim_end_matches(".exe")
            .to_ascii_lowercase();
        let login = items.iter().any(|v| v.as_str() == Some("login"));
        let separate: &[&str] = match tool.as_str() {
            "sshpass" => &["-p"],
            "docker" | "podman" if login => &["-p", "--password"],
            "redis-cli" => &["-a"],
            "zip" | "unzip" => &["-P"],
            "keytool" => &["-storepass", "-keypass", "-srcstorepass", "-deststorepass"],
            t if t.starts_with("ldap") => &["-w"],
            _ => &[],
        };
        let glued = GLUED.contains(&tool.as_str());
        if !glued && separate.is_empty() {
            return;
        }
        let mut i = 1;
        while i < items.len() {
            let Some(Value::String(arg)) = items.get(i) else {
                i += 1;
                continue;
            };
            if separate.contains(&arg.as_str()) {
                if let Some(Value::String(value)) = items.get_mut(i + 1)
                    && !validate::harmless_value(value)
                    && let Some(new) = self.inner.redact_whole(rule, value)
                {
                    *value = new;
                    self.hits.push((rule, 1));
                    self.record(path, "[]");
                }
                i += 2;
                continue;
            }
            if glued
                && let Some(Value::String(arg)) = items.get_mut(i)
                && let Some(value) = arg.strip_prefix("-p")
                && !value.is_empty()
                && !validate::harmless_value(value)
                && let Some(new) = self.inner.redact_whole(rule, value)
            {
                *arg = format!("-p{new}");
                self.hits.push((rule, 1));
                self.record(path, "[]");
            }
            i += 1;
        }
    }

    /// `["--password", "x"]`, `["-u", "user:pass"]`: command lines as argument lists, where
    /// a secret-looking flag's value is the next item.
    fn redact_argv(&mut self, items: &mut [Value], path: &[Seg<'_>]) {
        let Some(rule) = self.inner.enabled_rule("secret-flag") else {
            return;
        };
        let mut i = 0;
        while i + 1 < items.len() {
            let flag = match items.get(i) {
                Some(Value::String(s)) if s.starts_with('-') && s.len() <= 66 => s.clone(),
                _ => {
                    i += 1;
                    continue;
                }
            };
            let name = flag.trim_start_matches('-');
            let Some(Value::String(value)) = items.get_mut(i + 1) else {
                i += 1;
                continue;
            };
            let valid_name =
                !name.is_empty() && flag.len() - name.len() <= 2 && !name.contains(['=', ' ', '<']);
            let secret = valid_name
                && !value.starts_with('-')
                && !validate::harmless_value(value)
                && if matches!(name, "u" | "user") {
                    value.contains(':') && !value.contains("://")
                } else if keys::is_secret_key(name) {
                    true
                } else {
                    keys::is_weak_secret_key(name) && validate::looks_secret(value)
                };
            if secret && let Some(new) = self.inner.redact_whole(rule, value) {
                *value = new;
                self.hits.push((rule, 1));
                self.record(path, "[]");
                i += 2;
                continue;
            }
            i += 1;
        }
    }

    /// `["Authorization", "Bearer x"]`: headers and query strings also come as lists of
    /// pairs, where the secret-looking name is a sibling, not a key.
    fn redact_pair(&mut self, items: &mut [Value], path: &[Seg<'_>]) {
        let [Value::String(name), Value::String(value)] = items else {
            return;
        };
        // Only a name-like first item counts: not prose, and not a placeholder a previous
        // scrub wrote (`<secret:private-key>` reads as a secret's name).
        let name_like = name.len() <= 64 && !name.contains(|c: char| c.is_whitespace() || c == '<');
        if name_like
            && let Some(rule) = self.key_rule_for(name)
            && let Some(new) = self.inner.redact_whole(rule, value)
        {
            *value = new;
            self.hits.push((rule, 1));
            self.record(path, "[]");
        }
    }

    /// Scrubs the keys of a map, renaming the ones that change. Keys that end up equal are
    /// kept apart with a `#2`, `#3`, ... suffix, so the map keeps its size.
    fn scrub_keys(
        &mut self,
        map: &mut Map<String, Value>,
        path: &[Seg<'_>],
    ) -> Result<(), ScrubError> {
        let mut renames: HashMap<String, String, FxBuild> = HashMap::default();
        for key in map.keys() {
            match self.scrub_str(key) {
                Ok(Some(new)) => {
                    renames.insert(key.clone(), new);
                }
                Ok(None) => {}
                Err(passes) => return Err(Self::unstable(path, passes)),
            }
        }
        self.record(path, "{key}");
        if renames.is_empty() {
            return Ok(());
        }
        let old = std::mem::take(map);
        // The next suffix to try per key, so that many keys scrubbed to one (`<email>`) cost
        // one look each, not one per key before them.
        let mut next: HashMap<String, u64, FxBuild> = HashMap::default();
        for (key, value) in old {
            let mut new_key = match renames.remove(&key) {
                Some(to) => to,
                None => key,
            };
            if map.contains_key(&new_key) {
                let base = new_key.clone();
                let n = next.entry(base.clone()).or_insert(2);
                loop {
                    new_key = format!("{base}#{n}");
                    *n += 1;
                    if !map.contains_key(&new_key) {
                        break;
                    }
                }
            }
            map.insert(new_key, value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::format_message;

    #[test]
    fn log_messages_are_formatted_as_python_does_and_never_panic() {
        let params = serde_json::json!(["a", 2, {"k": "v"}]);
        assert_eq!(format_message("%s-%d-%s", &params), r#"a-2-{"k":"v"}"#);
        assert_eq!(format_message("{} {1} {0}", &params), "a 2 a");
        assert_eq!(format_message("100%% %5.2f", &params), "100% a");
        let named = serde_json::json!({"u": "bob"});
        assert_eq!(format_message("%(u)s {u} %(x)s", &named), "bob bob %(x)s");
        // Cut-off and odd placeholders stay as they are, whatever the text around them.
        for text in [
            "%",
            "%(",
            "%(x",
            "%5",
            "{",
            "{}}",
            "é%é{é}",
            "%(é)s",
            "%%%",
            "{9999}",
        ] {
            let _ = format_message(text, &params);
            let _ = format_message(text, &named);
        }
        assert_eq!(format_message("é%é{é}", &params), "é%é{é}");
        // Bounded: a thousand copies of a 10 KB parameter fill at most FILLED_MAX bytes.
        let big = serde_json::json!(["x".repeat(10_000)]);
        let out = format_message(&"{0}".repeat(1000), &big);
        assert!(out.len() <= super::FILLED_MAX + 3000, "{}", out.len());
    }

    #[test]
    fn formatting_is_linear_in_unclosed_placeholders() {
        // Each `%(` or `{` without a closer nearby is given up within a few bytes, not
        // after a scan of the rest of the message.
        let params = serde_json::json!({"a": "b"});
        let time = |n: usize| {
            let text = "%(".repeat(n) + &"{".repeat(n);
            let start = std::time::Instant::now();
            assert_eq!(format_message(&text, &params), text);
            start.elapsed()
        };
        let (small, large) = (time(20_000), time(160_000));
        let ratio = large.as_secs_f64() / small.as_secs_f64().max(1e-6);
        assert!(ratio < 24.0, "8x the input took {ratio:.1}x the time");
    }
}
