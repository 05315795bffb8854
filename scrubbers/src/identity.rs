//! Identities: user names, full names and hostnames, those the caller passes in and those
//! learned from the event itself, matched as whole tokens in any case.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

use regex::Regex;

use crate::error::BuildError;
use crate::matches::{NOT_HOSTS, select};
pub(crate) use crate::matches::{names_machine, select_matches};
use crate::paths;

/// Which identity rule a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum IdKind {
    User,
    FullName,
    Host,
}

/// Names that are too common to chase through free text: matching them as tokens would wipe
/// unrelated words (`root cause`, `admin panel`, `src/main.rs`). Their home paths are still
/// scrubbed.
const COMMON_NAMES: &[&str] = &[
    "root",
    "admin",
    "administrator",
    "user",
    "users",
    "test",
    "tests",
    "tester",
    "guest",
    "default",
    "public",
    "shared",
    "ubuntu",
    "debian",
    "fedora",
    "centos",
    "alpine",
    "arch",
    "archlinux",
    "kali",
    "pi",
    "raspberrypi",
    "ec2-user",
    "runner",
    "runneradmin",
    "vagrant",
    "docker",
    "build",
    "builder",
    "buildbot",
    "jenkins",
    "gitlab-runner",
    "ci",
    "home",
    "src",
    "lib",
    "bin",
    "app",
    "apps",
    "dev",
    "developer",
    "www",
    "www-data",
    "data",
    "nobody",
    "anonymous",
    "unknown",
    "system",
    "local",
    "localhost",
    "service",
    "services",
    "main",
    "master",
    "server",
    "host",
    "computer",
    "desktop",
    "laptop",
    "macbook",
    "mac",
    "linux",
    "windows",
    "android",
    "ios",
    "node",
    "web",
    "api",
    "demo",
    "temp",
    "tmp",
    "work",
    "owner",
    "daemon",
    "git",
    "postgres",
    "mysql",
    "redis",
    "nginx",
    "apache",
    "oracle",
    "unknown",
    "none",
    "null",
    "undefined",
    "true",
    "false",
    "wsl",
    "wsl$",
    "wsl.localhost",
    "me",
    "you",
    "info",
    "support",
    "sentry",
    "hostname",
    "redacted",
    "name",
];

/// Whether a name should be replaced wherever it appears as a token.
pub(crate) fn token_eligible(name: &str) -> bool {
    let name = name.trim();
    // Chinese, Japanese and Korean names are often two characters (`张伟`), and as
    // specific as a longer Latin one.
    let cjk = name.chars().all(|c| {
        matches!(u32::from(c), 0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF)
    });
    (name.chars().count() >= 3 || (cjk && name.chars().count() == 2))
        && name.chars().count() <= 128
        && name.chars().any(char::is_alphabetic)
        && !name.contains(['<', '>', '\n', '\r', '\t', '\\', '/'])
        && !COMMON_NAMES.iter().any(|c| name.eq_ignore_ascii_case(c))
}

/// Whether a name too short or common to chase everywhere is still replaced where it stands
/// in an identity position (`user root`, `root@vm`, `as root`, `for root on vm`, `host vm`).
pub(crate) fn position_eligible(name: &str) -> bool {
    let name = name.trim();
    let n = name.chars().count();
    (2..=128).contains(&n)
        && name.chars().any(char::is_alphabetic)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '$'))
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "localhost"
                | "unknown"
                | "none"
                | "null"
                | "undefined"
                | "true"
                | "false"
                | "redacted"
                | "hostname"
                | "name"
                | "user"
                | "host"
                | "me"
                | "you"
        )
}

/// Words after which a user name is in an identity position.
const USER_CUES: &[&str] = &[
    "user",
    "username",
    "user name",
    "login",
    "logged in as",
    "as",
    "for",
    "by",
    "owner",
    "uid",
    "account",
    "sudo -u",
    "su",
];

/// Words after which a hostname is in an identity position.
const HOST_CUES: &[&str] = &[
    "host",
    "hostname",
    "host name",
    "on",
    "machine",
    "computer",
    "node",
    "server",
    "at",
];

/// Whether the match at `range` stands where a user or host name would: after a cue word
/// (`user root`, `as root`, `host vm`, `on vm`, also with `=`, `:` or quotes between), as
/// the user of `user@host` or the host after `@`, or after `~`.
fn in_identity_position(text: &str, range: &Range<usize>, kind: IdKind) -> bool {
    let before = text.get(..range.start).unwrap_or("");
    let after = text.get(range.end..).unwrap_or("");
    if after.starts_with('@') && kind != IdKind::Host {
        return true;
    }
    if before.ends_with('@') && kind == IdKind::Host {
        return true;
    }
    if before.ends_with('~') && kind == IdKind::User {
        return true;
    }
    let trimmed = before.trim_end_matches(['"', '\'', '`']);
    let trimmed = trimmed.trim_end_matches([' ', '\t']);
    let trimmed = trimmed.strip_suffix([':', '=']).unwrap_or(trimmed);
    let trimmed = trimmed.trim_end_matches([' ', '\t']);
    if trimmed.len() == before.len() {
        return false;
    }
    let cues = if kind == IdKind::Host {
        HOST_CUES
    } else {
        USER_CUES
    };
    cues.iter().any(|cue| {
        trimmed.len() >= cue.len()
            && trimmed
                .get(trimmed.len() - cue.len()..)
                .is_some_and(|t| t.eq_ignore_ascii_case(cue))
            && trimmed
                .get(..trimmed.len() - cue.len())
                .and_then(|s| s.chars().next_back())
                .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '-')
    })
}

/// The names to find, each with its kind, de-duplicated case-insensitively (the first kind
/// given for a name wins). A name that is too short or common to replace everywhere is only
/// replaced in an identity position (see [`in_identity_position`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct IdentitySet {
    names: BTreeMap<String, (String, IdKind)>,
    positional: BTreeMap<String, (String, IdKind)>,
}

impl IdentitySet {
    /// Adds a name if it is specific enough to match as a token.
    pub(crate) fn add(&mut self, kind: IdKind, name: &str) -> bool {
        let name = name.trim();
        if !token_eligible(name) {
            if position_eligible(name) {
                let folded = name.to_lowercase();
                if !self.names.contains_key(&folded) && !self.positional.contains_key(&folded) {
                    self.positional.insert(folded, (name.to_owned(), kind));
                    return true;
                }
            }
            return false;
        }
        let folded = name.to_lowercase();
        if self.names.contains_key(&folded) {
            return false;
        }
        self.names.insert(folded, (name.to_owned(), kind));
        true
    }

    /// Adds a hostname and its short form (before the first `.`).
    pub(crate) fn add_host(&mut self, host: &str) -> bool {
        let host = host.trim().trim_end_matches('.');
        if host.parse::<IpAddr>().is_ok() {
            return false;
        }
        let mut added = self.add(IdKind::Host, host);
        if let Some((short, _)) = host.split_once('.') {
            added |= self.add(IdKind::Host, short);
        }
        added
    }

    /// Adds a full name and its spellings in handles (`alice.smith`, `alice_smith`, ...).
    pub(crate) fn add_full_name(&mut self, name: &str) -> bool {
        let parts: Vec<&str> = name.split_whitespace().collect();
        let mut added = self.add(IdKind::FullName, &parts.join(" "));
        if parts.len() > 1 {
            for sep in [".", "_", "-", ""] {
                added |= self.add(IdKind::FullName, &parts.join(sep));
            }
        }
        added
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        let folded = name.trim().to_lowercase();
        self.names.contains_key(&folded) || self.positional.contains_key(&folded)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = (&str, IdKind)> {
        self.names
            .values()
            .chain(self.positional.values())
            .map(|(name, kind)| (name.as_str(), *kind))
    }

    /// Compiles the set, keeping only the kinds for which `keep` holds (the enabled rules).
    pub(crate) fn compile(
        &self,
        keep: impl Fn(IdKind) -> bool,
        prebuilt: bool,
    ) -> Result<IdentityMatcher, BuildError> {
        let mut patterns = Vec::new();
        let mut kinds = Vec::new();
        let mut positional = Vec::new();
        let mut seen = HashSet::new();
        let all = self
            .names
            .values()
            .map(|v| (v, false))
            .chain(self.positional.values().map(|v| (v, true)));
        for ((name, kind), only_positioned) in all {
            let (name, kind) = (name.as_str(), *kind);
            if !keep(kind) {
                continue;
            }
            // ASCII case is handled by the matcher; other scripts get their lower, upper and
            // title case spelled out.
            let mut variants = vec![name.to_owned()];
            if !name.is_ascii() {
                let lower = name.to_lowercase();
                let upper = name.to_uppercase();
                let mut chars = lower.chars();
                let title: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                variants.extend([lower, upper, title]);
            }
            variants.dedup();
            for variant in variants {
                if seen.insert(variant.clone()) {
                    patterns.push(variant);
                    kinds.push(kind);
                    positional.push(only_positioned);
                }
            }
        }
        if patterns.is_empty() {
            return Ok(IdentityMatcher::default());
        }
        // A matcher built for one event must be cheap to build; the scrubber's own one is
        // built once and should be fast to run.
        let kind = if prebuilt {
            None
        } else {
            Some(AhoCorasickKind::ContiguousNFA)
        };
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .kind(kind)
            .build(&patterns)
            .map_err(|err| BuildError::Rule {
                rule: "user-name".to_owned(),
                message: err.to_string(),
            })?;
        Ok(IdentityMatcher {
            ac: Some(ac),
            kinds,
            positional,
            patterns,
            learned: !prebuilt,
        })
    }
}

/// Finds identities as whole tokens: not preceded or followed by a letter or digit, and not
/// part of a Rust path (`core::cmp::max`). Identities learned from an event are guesses (a
/// user `max` from `/home/max/x`), so they must also not touch an `_` (`max_by`) nor be a
/// file's name (`src/max.rs`).
#[derive(Debug, Default)]
pub(crate) struct IdentityMatcher {
    ac: Option<AhoCorasick>,
    kinds: Vec<IdKind>,
    /// Per pattern: replaced only in an identity position.
    positional: Vec<bool>,
    patterns: Vec<String>,
    learned: bool,
}

impl IdentityMatcher {
    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `text` holds any of the identities as a whole token.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let mut found = Vec::new();
        self.candidates(text, &mut found);
        !found.is_empty()
    }

    /// Every whole-token match, overlapping ones included.
    fn candidates(&self, text: &str, out: &mut Vec<(usize, Range<usize>, IdKind)>) {
        let Some(ac) = &self.ac else {
            return;
        };
        for m in ac.find_overlapping_iter(text) {
            let range = m.start()..m.end();
            if let Some(kind) = self.kinds.get(m.pattern().as_usize())
                && !range.is_empty()
                && is_token_boundary(text, &range)
                && (!self
                    .positional
                    .get(m.pattern().as_usize())
                    .copied()
                    .unwrap_or(false)
                    || in_identity_position(text, &range, *kind))
                && !in_rust_path(text, &range)
                && !(self.learned
                    && (touches_underscore(text, &range) || is_file_stem(text, &range)))
            {
                out.push((0, range, *kind));
            }
        }
    }

    /// The identities in `text`, leftmost-longest, from this matcher and `extra` together.
    pub(crate) fn find(
        &self,
        extra: Option<&IdentityMatcher>,
        text: &str,
    ) -> Vec<(Range<usize>, IdKind)> {
        let mut candidates = Vec::new();
        self.candidates(text, &mut candidates);
        if let Some(extra) = extra {
            extra.candidates(text, &mut candidates);
        }
        select(candidates)
            .into_iter()
            .map(|(_, range, kind)| (range, kind))
            .collect()
    }
}

fn is_token_boundary(text: &str, range: &Range<usize>) -> bool {
    let prev = text.get(..range.start).and_then(|s| s.chars().next_back());
    let next = text.get(range.end..).and_then(|s| s.chars().next());
    !prev.is_some_and(char::is_alphanumeric) && !next.is_some_and(char::is_alphanumeric)
}

/// Whether a match is a segment of a Rust path: `::` right before or after it.
fn in_rust_path(text: &str, range: &Range<usize>) -> bool {
    text.get(..range.start).is_some_and(|s| s.ends_with("::"))
        || text.get(range.end..).is_some_and(|s| s.starts_with("::"))
}

fn touches_underscore(text: &str, range: &Range<usize>) -> bool {
    text.get(..range.start).is_some_and(|s| s.ends_with('_'))
        || text.get(range.end..).is_some_and(|s| s.starts_with('_'))
}

/// File extensions after which a match is a file's name (`src/max.rs`), not a person's.
const FILE_EXTENSIONS: &[&str] = &[
    "rs", "toml", "json", "txt", "md", "log", "lock", "py", "js", "ts", "c", "h", "cc", "cpp",
    "hpp", "go", "java", "kt", "swift", "rb", "sh", "yml", "yaml", "html", "css", "xml", "csv",
    "so", "dll", "dylib", "exe", "a", "o", "png", "jpg", "svg", "wasm",
];

/// Whether a match is followed by `.` and a file extension: `max.rs`.
fn is_file_stem(text: &str, range: &Range<usize>) -> bool {
    let Some(rest) = text.get(range.end..).and_then(|s| s.strip_prefix('.')) else {
        return false;
    };
    let len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    rest.get(..len)
        .is_some_and(|ext| FILE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Matches that are whole tokens: not preceded or followed by a letter or digit.
pub(crate) fn find_tokens(ac: &AhoCorasick, text: &str) -> Vec<(usize, Range<usize>)> {
    select_matches(ac, text, |_, range| is_token_boundary(text, range))
}

/// Identities found in one event or text, in the order found, each once (case folded).
#[derive(Debug, Default)]
pub(crate) struct Learned {
    pub(crate) users: Vec<String>,
    pub(crate) hosts: Vec<String>,
    /// The folded names in `users` and `hosts`: adding a name costs the same however many
    /// there are (an event may hold tens of thousands).
    seen_users: HashSet<String>,
    seen_hosts: HashSet<String>,
}

impl Learned {
    pub(crate) fn is_empty(&self) -> bool {
        self.users.is_empty() && self.hosts.is_empty()
    }

    /// Adds a user name if it is specific enough and new; whether it was added.
    pub(crate) fn push_user(&mut self, name: &str) -> bool {
        push_unique(&mut self.users, &mut self.seen_users, name)
    }

    /// Adds a host name if it is specific enough and new; whether it was added.
    pub(crate) fn push_host(&mut self, name: &str) -> bool {
        push_unique(&mut self.hosts, &mut self.seen_hosts, name)
    }

    /// Adds `other`'s names to this set and returns those that were not in it yet.
    pub(crate) fn absorb(&mut self, other: Learned) -> Learned {
        let mut added = Learned::default();
        for user in other.users {
            if self.push_user(&user) {
                added.push_user(&user);
            }
        }
        for host in other.hosts {
            if self.push_host(&host) {
                added.push_host(&host);
            }
        }
        added
    }
}

struct LearnPatterns {
    /// Cheap test whether a string can teach anything at all.
    prefilter: AhoCorasick,
    /// `\\host\share`, `\\?\UNC\host\share`, and their JSON-escaped forms.
    unc: Regex,
    /// `HOSTNAME=x`, `COMPUTERNAME=x`, `USER=x`, `USERNAME=x`, `LOGNAME=x`.
    assignment: Regex,
    /// `Linux <host> 6.5.0 ...`: `uname -a`.
    uname: Regex,
}

static LEARN: LazyLock<Option<LearnPatterns>> = LazyLock::new(|| {
    let prefilter = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(LEARN_TRIGGERS)
        .ok()?;
    let unc = Regex::new(
        r"\\{2}(?:\\{2})?(?:\?\\{1,2}UNC\\{1,2})?(?P<host>[A-Za-z0-9][A-Za-z0-9._$-]*)\\",
    )
    .ok()?;
    let assignment = Regex::new(
        r#"(?i)(?-u:\b)(?P<key>hostname|computername|user|username|logname)=["']?(?P<value>[\p{L}\p{N}][\p{L}\p{N}._-]*)"#,
    )
    .ok()?;
    // `uname -a` (an OS context's `raw_description`, pasted output): the second word is the
    // machine's name, before the kernel's release and its build (`#1 SMP ...` on Linux and
    // the BSDs, `Darwin Kernel Version` on macOS); not `/proc/version`'s `Linux version 6.5`.
    let uname = Regex::new(
        r"(?-u:\b)(?:(?:Linux|FreeBSD|OpenBSD|NetBSD) (?P<host>[A-Za-z0-9][A-Za-z0-9._-]{0,62}) \d+\.\d+\S* #|Darwin (?P<mac>[A-Za-z0-9][A-Za-z0-9._-]{0,62}) \d+\.\d+\S* Darwin Kernel)",
    )
    .ok()?;
    Some(LearnPatterns {
        prefilter,
        unc,
        assignment,
        uname,
    })
});

/// Checks at build time that the learning patterns compile.
pub(crate) fn check_compiled() -> Result<(), BuildError> {
    if LEARN.is_some() {
        Ok(())
    } else {
        Err(BuildError::Rule {
            rule: "hostname".to_owned(),
            message: "internal learning patterns do not compile".to_owned(),
        })
    }
}

/// Literals without which a string teaches nothing; the scrubber's prefilter looks for them.
pub(crate) const LEARN_TRIGGERS: &[&str] = &[
    "home",
    "users",
    "documents and settings",
    "\\\\",
    "hostname=",
    "computername=",
    "user=",
    "username=",
    "logname=",
];

/// Learns the machine's name from `uname -a` output (`Linux <host> 6.5.0 ...`): an OS
/// context's `raw_description`, or pasted into a message.
fn learn_uname(text: &str, learned: &mut Learned) {
    let Some(patterns) = &*LEARN else {
        return;
    };
    let bytes = text.as_bytes();
    let cue = |word: &[u8]| memchr::memmem::find(bytes, word).is_some();
    if !(cue(b"Linux ") || cue(b"Darwin ") || cue(b"BSD ")) {
        return;
    }
    for caps in patterns.uname.captures_iter(text) {
        if let Some(host) = caps.name("host").or_else(|| caps.name("mac"))
            && names_machine(host.as_str())
            && !host.as_str().eq_ignore_ascii_case("version")
        {
            learned.push_host(host.as_str());
        }
    }
}

/// Learns identities from one string (a value or a key).
pub(crate) fn learn_from_str(text: &str, learned: &mut Learned) {
    let Some(patterns) = &*LEARN else {
        return;
    };
    if patterns.prefilter.is_match(text) {
        learn_from_str_with(text, &paths::home_hits(text), learned);
    }
    learn_uname(text, learned);
}

/// Learns identities from one string, skipping the home-path regex when every home in the
/// string is one of `known_users` (lower case), which is what most strings of an event from
/// the running user's machine hold.
pub(crate) fn learn_from_str_quick(text: &str, known_users: &[String], learned: &mut Learned) {
    let Some(patterns) = &*LEARN else {
        return;
    };
    // Every home path, UNC path and `NAME=value` pair has one of these bytes; most strings
    // (function names, messages, keys) have none.
    learn_uname(text, learned);
    let bytes = text.as_bytes();
    if memchr::memchr3(b'/', b'\\', b'=', bytes).is_none() && memchr::memchr(b'%', bytes).is_none()
    {
        return;
    }
    let mut homes = false;
    let mut other = false;
    // Non-overlapping is enough here: no trigger overlaps another in a way that matters.
    for m in patterns.prefilter.find_iter(text) {
        match LEARN_TRIGGERS.get(m.pattern().as_usize()) {
            Some(&("home" | "users")) => {
                homes = homes || !followed_by_known_user(text, m.end(), known_users);
            }
            Some(&"documents and settings") => homes = true,
            _ => other = true,
        }
        if homes && other {
            break;
        }
    }
    if homes || other {
        let found = if homes {
            paths::home_hits(text)
        } else {
            Vec::new()
        };
        learn_from_str_with(text, &found, learned);
    }
}

/// Whether `text[at..]` is a separator and then one of `known` (lower case) as a whole path
/// segment: `/alice/` after `home`.
fn followed_by_known_user(text: &str, at: usize, known: &[String]) -> bool {
    let Some(rest) = text.get(at..) else {
        return false;
    };
    let lower_prefix =
        |s: &str, p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let rest = if let Some(r) = rest.strip_prefix('/') {
        r
    } else if let Some(r) = rest.strip_prefix('\\') {
        r.trim_start_matches('\\')
    } else if lower_prefix(rest, "%2f") || lower_prefix(rest, "%5c") {
        rest.get(3..).unwrap_or("")
    } else {
        return false;
    };
    let end = rest
        .find(|c: char| matches!(c, '/' | '\\' | '%' | '"' | '\'' | ':') || c.is_whitespace())
        .unwrap_or(rest.len());
    let segment = rest.get(..end).unwrap_or("");
    known.iter().any(|user| {
        segment.eq_ignore_ascii_case(user)
            || (!segment.is_ascii() && segment.to_lowercase() == *user)
    })
}

/// Learns identities from one string whose home paths were already found.
fn learn_from_str_with(text: &str, homes: &[paths::HomeHit], learned: &mut Learned) {
    let Some(patterns) = &*LEARN else {
        return;
    };
    for hit in homes {
        if let Some(user) = text.get(hit.user.clone())
            && teaches(text, hit)
        {
            let user = paths::decode(user);
            learned.push_user(&user);
            // A domain profile folder `bob.CORP` is the home of `bob`.
            if matches!(
                hit.shape,
                paths::Shape::Windows | paths::Shape::Unc | paths::Shape::Mounted
            ) && let Some((name, _)) = user.split_once('.')
            {
                learned.push_user(name);
            }
        }
        // `//server/Users/bob` names the server as `\\server\Users\bob` does.
        if let Some(host) = hit.host.clone().and_then(|range| text.get(range)) {
            learned.push_host(host);
        }
    }
    for range in unc_hosts(text) {
        if let Some(host) = text.get(range) {
            learned.push_host(host);
        }
    }
    if text.contains('=') {
        for caps in patterns.assignment.captures_iter(text) {
            let (Some(key), Some(value)) = (caps.name("key"), caps.name("value")) else {
                continue;
            };
            let value = value.as_str().trim_end_matches('.');
            // Code, not a name: `user=self.id`, `user=ctx.user`, `user=None` in a structured
            // log line.
            let receiver = value.split_once('.').is_some_and(|(head, _)| {
                matches!(
                    head,
                    "self"
                        | "this"
                        | "ctx"
                        | "req"
                        | "request"
                        | "args"
                        | "opts"
                        | "cfg"
                        | "config"
                        | "params"
                        | "session"
                        | "state"
                        | "event"
                        | "msg"
                )
            });
            let empty = [
                "none",
                "null",
                "nil",
                "undefined",
                "true",
                "false",
                "unknown",
            ]
            .iter()
            .any(|w| value.eq_ignore_ascii_case(w));
            if receiver || empty {
                continue;
            }
            let key = key.as_str().to_ascii_lowercase();
            if key == "hostname" || key == "computername" {
                learned.push_host(value);
            } else {
                learned.push_user(value);
            }
        }
    }
}

/// Whether a home path names a user for sure. `/home/x` and `/Users/x` also make web routes
/// (`GET /home/dashboard`, `https://example.com/home/about`), so one that ends at the user
/// teaches nothing when it is part of a URL or in a text about HTTP (a request line, a URL).
/// Anywhere else it is
/// redacted as a home, and its user is learned as well (`cannot chdir to /home/kim as kim`,
/// `:/home/kim:/bin/bash`).
fn teaches(text: &str, hit: &paths::HomeHit) -> bool {
    if !matches!(hit.shape, paths::Shape::Unix | paths::Shape::PercentEncoded)
        || hit.continues(text)
    {
        return true;
    }
    let before = text.get(..hit.home.start).unwrap_or("");
    // Part of a URL or a longer path: glued to what comes before it.
    if before
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '/' | '%'))
    {
        return false;
    }
    // A text about HTTP (a request line, a URL) holds routes, not homes.
    const METHODS: &[&str] = &[
        "GET ", "POST ", "PUT ", "PATCH ", "DELETE ", "HEAD ", "OPTIONS ",
    ];
    !(text.contains("://") || METHODS.iter().any(|m| text.contains(m)))
}

/// The hosts of UNC paths (`\\\\host\\share`, `\\\\?\\UNC\\host\\share`, JSON-escaped or
/// not) in `text`, except those that name no machine (`wsl$`, `localhost`).
pub(crate) fn unc_hosts(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let Some(patterns) = &*LEARN else {
        return out;
    };
    if !text.contains("\\\\") {
        return out;
    }
    for caps in patterns.unc.captures_iter(text) {
        let (Some(whole), Some(host)) = (caps.get(0), caps.name("host")) else {
            continue;
        };
        let prev = text
            .get(..whole.start())
            .and_then(|s| s.chars().next_back());
        // `C:\\Users` in JSON-escaped text is no UNC path: the `\\` must start a path.
        let starts_path = prev.is_none_or(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    '"' | '\'' | '=' | '(' | '[' | '{' | ',' | ';' | '`' | '<'
                )
        });
        if starts_path
            && !NOT_HOSTS
                .iter()
                .any(|n| host.as_str().eq_ignore_ascii_case(n))
        {
            out.push(host.range());
        }
    }
    out
}

/// Learns a hostname or user name from a map entry (or a `[key, value]` pair) whose key
/// names one (`server_name`, `hostname`, `USER`, `LOGNAME`), as `HOSTNAME=x` and `USER=x`
/// in a string teach them.
pub(crate) fn learn_from_entry(key: &str, value: &str, learned: &mut Learned) {
    const HOST_KEYS: &[&str] = &[
        "server_name",
        "hostname",
        "host_name",
        "computername",
        "computer_name",
        "device.name",
    ];
    const USER_KEYS: &[&str] = &["user", "username", "user_name", "logname", "login_name"];
    // `["username", "password"]`, `["user", "token"]`: a list of field names, not an entry.
    let name_of_a_field = |v: &str| {
        let v = v.trim();
        USER_KEYS
            .iter()
            .chain(HOST_KEYS)
            .any(|k| v.eq_ignore_ascii_case(k))
            || crate::keys::is_secret_key(v)
            || ["email", "mail", "name", "id", "uid", "host", "password"]
                .iter()
                .any(|k| v.eq_ignore_ascii_case(k))
    };
    if name_of_a_field(value) {
        return;
    }
    if HOST_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
        learn_host(value, learned);
    } else if USER_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k)) {
        let value = value.trim();
        // One word that reads as a login name, not prose or a placeholder.
        if value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            learned.push_user(value);
        }
    }
}

pub(crate) fn learn_host(value: &str, learned: &mut Learned) {
    let value = value.trim();
    if names_machine(value) {
        learned.push_host(value);
    }
}

fn push_unique(list: &mut Vec<String>, seen: &mut HashSet<String>, name: &str) -> bool {
    if token_eligible(name) && seen.insert(name.to_lowercase()) {
        list.push(name.to_owned());
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learn(text: &str) -> Learned {
        let mut learned = Learned::default();
        learn_from_str(text, &mut learned);
        learned
    }

    #[test]
    fn learns_users_and_hosts() {
        assert_eq!(learn("/home/bob/x /Users/carol/y").users, ["bob", "carol"]);
        assert_eq!(learn("/home/root/x /home/ab/y").users, Vec::<String>::new());
        assert_eq!(learn(r"open \\fileserver\share\x").hosts, ["fileserver"]);
        assert_eq!(learn(r#"{"p": "\\\\fs01\\share"}"#).hosts, ["fs01"]);
        assert!(learn(r"C:\\Users\\bob").hosts.is_empty());
        assert!(learn(r"\\wsl$\Ubuntu\home\dave").hosts.is_empty());
        assert_eq!(learn(r"\\wsl$\Ubuntu\home\dave").users, ["dave"]);
        assert_eq!(
            learn("HOSTNAME=build-box-7 USER=erin").hosts,
            ["build-box-7"]
        );
        assert_eq!(learn("HOSTNAME=build-box-7 USER=erin").users, ["erin"]);
        assert_eq!(learn(r"\\fs\Users\dave\x").users, ["dave"]);
        assert_eq!(learn(r"C:\Users\bob.CORP\x").users, ["bob.CORP", "bob"]);
        assert_eq!(learn("file:///home/j%C3%B6rg/x").users, ["j\u{f6}rg"]);
        assert!(
            learn("GET /home/dashboard and /Users/profile")
                .users
                .is_empty()
        );
        assert_eq!(learn("HOME=/home/bob").users, ["bob"]);
        assert_eq!(learn("/home/bob").users, ["bob"]);
    }

    #[test]
    fn learned_names_spare_code_and_files() {
        let mut set = IdentitySet::default();
        set.add(IdKind::User, "max");
        let learned = set.compile(|_| true, false).unwrap();
        let given = set.compile(|_| true, true).unwrap();
        let text = "core::cmp::max_by max src/max.rs max::f";
        let found = |m: &IdentityMatcher| {
            m.find(None, text)
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
        };
        assert_eq!(found(&learned), vec![18..21]);
        assert_eq!(found(&given), [18..21, 26..29]);
    }

    #[test]
    fn whole_tokens_only() {
        let mut set = IdentitySet::default();
        set.add(IdKind::User, "bob");
        let m = set.compile(|_| true, true).unwrap();
        let found = |t: &str| {
            m.find(None, t)
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
        };
        assert_eq!(found("bobby BOB bob_x"), [6..9, 10..13]);
        assert!(found("kabob").is_empty());
    }
}
