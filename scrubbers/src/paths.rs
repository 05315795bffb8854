//! Home directories in paths: `/home/<user>`, `/homes/<user>`, `/Users/<user>`,
//! `C:\Users\<user>` in every spelling, WSL's `/mnt/c/Users/<user>` and
//! `\\wsl$\<distro>\home\<user>`, AFS homes (`/afs/<cell>/user/j/<user>`), `~<user>/`, and
//! their JSON-escaped (`\/`, `\u002f`) and percent-encoded forms.
//!
//! One regex finds them all; the code around it does what the regex crate cannot (no
//! look-behind): it checks that a match starts a path rather than continuing one
//! (`/opt/app/home/config` is no home), unless what comes before is the root of another file
//! system (`/Volumes/Backup/Users/bob/x`, `sftp://host/home/bob/x`), and decides per match
//! whether it is the running user's home (becomes `~`) or someone else's (the user segment
//! becomes a placeholder).

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use crate::error::BuildError;

/// A path separator as it appears in paths, JSON-escaped text (`\\`, `\/`, `\u002f`,
/// `\u005c`) and percent-encoded URLs.
const SEP: &str = r"(?:\\/|/|\\u00(?:2[Ff]|5[Cc])|\\{1,4}|%2[Ff]|%5[Cc])";
/// A Unix path separator, also JSON-escaped (`\/`, `\u002f`).
const USEP: &str = r"(?:\\?/|\\u002[Ff])";
/// A percent-encoded byte other than a separator (`%2F`, `%5C`): `j%C3%B6rg`, `O%27Brien`,
/// `bob%20smith`.
const PCT: &str = r"%(?:[01346-9A-Fa-f][0-9A-Fa-f]|2[0-9A-Ea-e]|5[0-9ABD-Fabd-f])";
/// A user segment without spaces. An apostrophe counts when a letter or digit follows it
/// (`O'Brien`), so that a closing quote (`'/home/bob'`) does not.
static USER: LazyLock<String> =
    LazyLock::new(|| format!(r#"(?:[^/\\\s<>:"'|?*%(){{}}\[\],;=&#@`]|{PCT}|'[\p{{L}}\p{{N}}])+"#));
/// A Windows user segment, which may contain spaces. When no separator follows it,
/// [`home_hits`] decides how many of its words are the name (`C:\Users\Alice Smith"`) and
/// where prose starts (`C:\Users\bob is here`).
static USER_SPACED: LazyLock<String> = LazyLock::new(|| {
    format!(r#"(?:[^/\\\r\n\t<>:"'|?*%(){{}}\[\],;=&#@`]|{PCT}|'[\p{{L}}\p{{N}}])+"#)
});

/// The home-path regex and the indices of its groups, looked up once.
struct HomeRegex {
    re: Regex,
    groups: [usize; 18],
}

const GROUP_NAMES: [&str; 18] = [
    "wsl", "u_wsl", "mnt", "u_mnt1", "u_mnt2", "win", "u_win1", "u_win2", "unc", "u_unc1",
    "u_unc2", "afs", "u_afs", "unix", "u_unix", "tilde", "u_tilde", "u_pct",
];

static HOME_RE: LazyLock<Result<HomeRegex, regex::Error>> = LazyLock::new(|| {
    let user = USER.as_str();
    let spaced = USER_SPACED.as_str();
    let pattern = [
        // \\wsl$\Ubuntu\home\bob and \\wsl.localhost\Ubuntu\home\bob
        format!(
            r"(?P<wsl>\\{{2,4}}(?i:wsl\$|wsl\.localhost)\\{{1,2}}[^\\/\s]+\\{{1,2}}home\\{{1,2}})(?P<u_wsl>{user})"
        ),
        // /mnt/c/Users/bob (WSL), /cygdrive/c/Users/bob (Cygwin), /c/Users/bob (MSYS)
        format!(
            r"(?P<mnt>(?:/mnt|/cygdrive)?/[A-Za-z]/(?i:users)/)(?:(?P<u_mnt1>{spaced})/|(?P<u_mnt2>{user}))"
        ),
        // C:\Users\bob, c:/users/bob, C:\\Users\\bob, \\?\C:\Users\bob, C%3A%5CUsers%5Cbob
        format!(
            r"(?P<win>(?:\\{{2,4}}[?.]\\{{1,2}})?[A-Za-z](?::|%3[Aa]){SEP}(?i:users|profiles|documents and settings){SEP})(?:(?P<u_win1>{spaced}){SEP}|(?P<u_win2>{spaced}))"
        ),
        // UNC shares of user folders: \\server\Users\bob, \\server\c$\Users\bob,
        // \\server\home\bob, \\?\UNC\server\Users\bob, //server/Users/bob
        format!(
            r#"(?P<unc>(?:\\{{2,4}}(?:\?\\{{1,2}}(?i:unc)\\{{1,2}})?|//)[A-Za-z0-9][A-Za-z0-9._$-]*(?:{SEP}[^\\/\s"'<>|?*:%]+)?{SEP}(?i:users\$?|homes?\$?|profiles?\$?){SEP})(?:(?P<u_unc1>{spaced}){SEP}|(?P<u_unc2>{spaced}))"#
        ),
        // AFS homes: /afs/cern.ch/user/j/jdoe, /afs/example.edu/home/jdoe
        format!(
            r#"(?P<afs>{USEP}afs{USEP}[^/\\\s"'<>|]+{USEP}(?:user|usr|home){USEP}(?:[a-z0-9]{USEP}){{0,2}})(?P<u_afs>{user})"#
        ),
        // /home/bob, /homes/bob, /home2/bob (shared hosting), /Users/bob, /var/home/bob,
        // /export/home/bob, JSON-escaped
        // \/home\/bob and \u002fhome\u002fbob
        format!(
            r"(?P<unix>(?:{USEP}(?:var|usr|export))?{USEP}(?:home[0-9]{{0,2}}|homes|Users){USEP})(?P<u_unix>{user})"
        ),
        // ~bob/ (the shell's home of bob); [`home_hits`] checks that a separator follows
        r"(?P<tilde>~)(?P<u_tilde>[A-Za-z_][A-Za-z0-9_.-]{0,31})".to_owned(),
        // %2Fhome%2Fbob
        format!(r"(?P<pct>%2[Ff](?:home|Users)%2[Ff])(?P<u_pct>(?:[A-Za-z0-9._-]|{PCT})+)"),
    ]
    .join("|");
    let re = Regex::new(&pattern)?;
    let mut groups = [0; 18];
    for (slot, name) in groups.iter_mut().zip(GROUP_NAMES) {
        // Every name is in the pattern above; index 0 (the whole match) is never returned
        // by `group` as a sub-match, so a missing name simply never matches.
        *slot = re
            .capture_names()
            .position(|n| n == Some(name))
            .unwrap_or(0);
    }
    Ok(HomeRegex { re, groups })
});

/// The roots under which another file system, with homes of its own, is mounted or reached:
/// macOS volumes (`/Volumes/Backup`, `/System/Volumes/Data`), Linux mount points (`/mnt`,
/// `/media/<name>`, `/run/media/<user>/<label>`), network file systems (`/nfs`,
/// `/net/<host>`), `/srv`, and the authority of a file-transfer URL (`sftp://host`). Matched at
/// the end of what precedes a `/home` or `/Users` (with `\/` read as `/`); [`after_mount`]
/// checks that the root starts a path.
static MOUNT_ROOT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?:(?:/System)?/Volumes/[^/\\"'<>|\r\n\t]+|/mnt|/nfs|/srv|/net/[^/\\\s"'<>|]+|(?:/run)?/media(?:/[^/\\"'<>|\r\n\t]+){1,2}|(?i:file|sftp|ssh|scp|smb|cifs|nfs|afp|ftps?|rsync)://[^/\\\s"'<>|]+)\z"#,
    )
    .ok()
});

/// How far back [`after_mount`] looks for the root of a mounted file system.
const MOUNT_LOOKBACK: usize = 256;

/// Whether `before` ends with the root of a mounted or remote file system that starts a path,
/// so that a `/home/<user>` or `/Users/<user>` right after it is a home on that file system.
fn after_mount(before: &str) -> bool {
    let Some(re) = &*MOUNT_ROOT else {
        return false;
    };
    let mut from = before.len().saturating_sub(MOUNT_LOOKBACK);
    while !before.is_char_boundary(from) {
        from += 1;
    }
    let (head, tail) = before.split_at(from);
    let tail: std::borrow::Cow<'_, str> = if tail.contains("\\/") {
        tail.replace("\\/", "/").into()
    } else {
        tail.into()
    };
    let Some(m) = re.find(&tail) else {
        return false;
    };
    let prev = match tail.get(..m.start()) {
        Some(s) if !s.is_empty() => s.chars().next_back(),
        _ => head.chars().next_back(),
    };
    !prev.is_some_and(|c| is_path_char(c) || c == '/' || c == '\\')
}

/// Words every home path holds, to skip the regex where none is left.
static HOME_WORDS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([
            "home",
            "users",
            "profile",
            "documents and settings",
            "afs",
            "~",
        ])
        .ok()
});

/// Whether `text` may hold a home path at all.
pub(crate) fn may_hold_home(text: &str) -> bool {
    HOME_WORDS.as_ref().is_none_or(|ac| ac.is_match(text))
}

/// Checks at build time that the home-path regex compiles, so scrubbing never meets a broken
/// one.
pub(crate) fn check_compiled() -> Result<(), BuildError> {
    match (&*HOME_RE, &*MOUNT_ROOT) {
        (Ok(_), Some(_)) => Ok(()),
        (Err(err), _) => Err(BuildError::Pattern {
            rule: "home-path".to_owned(),
            message: err.to_string(),
        }),
        (Ok(_), None) => Err(BuildError::Rule {
            rule: "home-path".to_owned(),
            message: "the pattern of mounted file systems does not compile".to_owned(),
        }),
    }
}

/// What kind of home a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `\\wsl$\distro\home\user`
    WslUnc,
    /// `/mnt/c/Users/user`: a Windows home seen from Linux. Kept in shape even for the
    /// running user, whose home in that session is a different directory.
    Mounted,
    /// `\\server\Users\user`: a user folder on a file share. Kept in shape even for the
    /// running user: it is not the home of this session.
    Unc,
    /// `C:\Users\user`
    Windows,
    /// `/home/user`, `/Users/user`
    Unix,
    /// `/home/user` or `/Users/user` on another file system: a volume, a mount point, a
    /// network share or a remote host (`/Volumes/Backup/Users/user/x`, `/mnt/home/user/x`,
    /// `sftp://host/home/user/x`). Kept in shape even for the running user: it is not the
    /// home of this session.
    Nested,
    /// `%2Fhome%2Fuser`
    PercentEncoded,
}

impl Shape {
    /// Whether a home of this shape is the running user's home in this session (becomes
    /// `~`) when its user is the running user.
    pub(crate) fn may_be_own(self) -> bool {
        !matches!(self, Shape::Mounted | Shape::Unc | Shape::Nested)
    }
}

/// One home directory found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HomeHit {
    /// From the start of the path to the end of the user segment.
    pub(crate) home: Range<usize>,
    /// The user segment.
    pub(crate) user: Range<usize>,
    pub(crate) shape: Shape,
    /// The host of a UNC path written with slashes (`//server/Users/bob`,
    /// `file://server/Users/bob`), unless it names no machine (`localhost`). The hosts of
    /// UNC paths with backslashes are found by [`crate::identity::unc_hosts`].
    pub(crate) host: Option<Range<usize>>,
}

impl HomeHit {
    /// Whether a path segment follows the user segment (`/home/bob/x`, not `/home/bob`).
    pub(crate) fn continues(&self, text: &str) -> bool {
        text.get(self.user.end..).is_some_and(|rest| {
            rest.starts_with(['/', '\\'])
                || rest
                    .get(..3)
                    .is_some_and(|p| p.eq_ignore_ascii_case("%2f") || p.eq_ignore_ascii_case("%5c"))
                || rest.get(..6).is_some_and(|p| {
                    p.eq_ignore_ascii_case("\\u002f") || p.eq_ignore_ascii_case("\\u005c")
                })
        })
    }
}

/// User segments that name no person: shared folders of Windows and macOS.
const NOT_USERS: &[&str] = &[
    "shared",
    "public",
    "default",
    "default user",
    "all users",
    "guest",
];

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '~' | '-')
}

/// Whether a character may come right before a path that starts with `\\` or `//` (a UNC
/// path): not part of a word, a path or a URL.
fn starts_unc(text: &str, start: usize) -> bool {
    let before = text.get(..start).unwrap_or("");
    match before.chars().next_back() {
        None => true,
        Some(c) if c.is_whitespace() => true,
        Some('"' | '\'' | '=' | '(' | '[' | '{' | ',' | ';' | '`' | '<') => true,
        // `file://server/Users/bob`, `smb://server/Users/bob`
        Some(':') => ["file:", "smb:"].iter().any(|scheme| {
            before
                .get(before.len().saturating_sub(scheme.len())..)
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
                && !before
                    .get(..before.len() - scheme.len())
                    .and_then(|s| s.chars().next_back())
                    .is_some_and(char::is_alphanumeric)
        }),
        Some(_) => false,
    }
}

/// How long the name is in a user segment with spaces that no separator ends: the whole
/// segment before a quote if it has at most four words (`"C:\Users\alice smith"`),
/// else the first word and the capitalised words after it (`C:\Users\Alice Smith (os
/// error 2)`, but `C:\Users\bob is here`).
fn spaced_name_len(name: &str, end: Option<char>) -> usize {
    let words = name.split(' ').filter(|w| !w.is_empty()).count();
    if matches!(end, Some('"' | '\'')) && words <= 4 {
        return name.trim_end().len();
    }
    let mut len = 0;
    let mut offset = 0;
    for (i, word) in name.split(' ').enumerate() {
        let capital = word
            .chars()
            .next()
            .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit());
        if i >= 4 || (i > 0 && !capital) {
            break;
        }
        if !word.is_empty() {
            len = offset + word.len();
        }
        offset += word.len() + 1;
    }
    len
}

/// Whether `before` ends with a drive (`D:`): a home found right after it is on that drive
/// (`D:\Users\alice`), which the home-path regex handles as a whole.
fn after_drive(before: &str) -> bool {
    let mut rev = before.chars().rev();
    matches!(rev.next(), Some(':'))
        && rev.next().is_some_and(|c| c.is_ascii_alphabetic())
        && !rev.next().is_some_and(is_path_char)
}

/// Whether the home-path regex sees a longer home where a literal home matched: the literal
/// `C:\Users\alice` in `C:\Users\Alice Smith"` is the start of another user's home.
fn longer_home(text: &str, range: &Range<usize>) -> bool {
    let Some(rest) = text.get(range.start..) else {
        return false;
    };
    home_hits(rest)
        .first()
        .is_some_and(|hit| hit.home.start == 0 && hit.home.end > range.len())
}

/// Finds the home directories in `text`, left to right, not overlapping.
pub(crate) fn home_hits(text: &str) -> Vec<HomeHit> {
    let mut hits = Vec::new();
    let Ok(HomeRegex { re, groups }) = &*HOME_RE else {
        return hits;
    };
    let mut locs = re.capture_locations();
    let mut pos = 0;
    while pos <= text.len() {
        let Some(whole) = re.captures_read_at(&mut locs, text, pos) else {
            break;
        };
        let start = whole.start();
        let prev = text.get(..start).and_then(|s| s.chars().next_back());
        let mut next_pos = whole.end().max(next_char(text, start));
        let group = |name: &str| -> Option<Range<usize>> {
            let slot = GROUP_NAMES.iter().position(|n| *n == name)?;
            let index = *groups.get(slot)?;
            if index == 0 {
                return None;
            }
            locs.get(index).map(|(s, e)| s..e)
        };
        // A spaced user segment that no separator ends: the name is its first words.
        let spaced = |user: Range<usize>| -> Range<usize> {
            let name = text.get(user.clone()).unwrap_or("");
            if !name.contains(' ') {
                return user;
            }
            let end = text.get(user.end..).and_then(|s| s.chars().next());
            user.start..user.start + spaced_name_len(name, end)
        };
        let found = if group("wsl").is_some() {
            group("u_wsl").map(|u| (u, Shape::WslUnc, prev != Some('\\')))
        } else if group("mnt").is_some() {
            group("u_mnt1")
                .or_else(|| group("u_mnt2"))
                .map(|u| (u, Shape::Mounted, !prev.is_some_and(is_path_char)))
        } else if group("win").is_some() {
            let starts_unc = text.get(start..).is_some_and(|s| s.starts_with('\\'));
            let ok = if starts_unc {
                prev != Some('\\')
            } else {
                !prev.is_some_and(|c| c.is_alphanumeric() || c == '_')
            };
            group("u_win1")
                .or_else(|| group("u_win2").map(spaced))
                .map(|u| (u, Shape::Windows, ok))
        } else if group("unc").is_some() {
            group("u_unc1")
                .or_else(|| group("u_unc2").map(spaced))
                .map(|u| (u, Shape::Unc, starts_unc(text, start)))
        } else if group("afs").is_some() {
            // A one-letter segment is the initial's directory (`user/j/jdoe`), seen as the
            // user only where the user after it is already a placeholder.
            group("u_afs").map(|u| {
                let initial = u.len() == 1;
                (u, Shape::Unix, !prev.is_some_and(is_path_char) && !initial)
            })
        } else if group("tilde").is_some() {
            // `~bob/x`, not `PROGRA~1`, `a~b` or `~bob` alone (a word, a version).
            let ok = !prev.is_some_and(|c| is_path_char(c) || c == '/' || c == '\\');
            group("u_tilde").map(|u| {
                let named = text.get(u.clone()).unwrap_or("");
                let ends_path = text
                    .get(u.end..)
                    .is_some_and(|rest| rest.starts_with('/') || rest.starts_with("\\/"));
                (
                    u,
                    Shape::Unix,
                    ok && ends_path && !named.eq_ignore_ascii_case("root"),
                )
            })
        } else if group("unix").is_some() {
            // In `x\/home\/bob` the path starts before the escaping backslash.
            let prev =
                if prev == Some('\\') && text.get(start..).is_some_and(|s| s.starts_with('/')) {
                    text.get(..start.saturating_sub(1))
                        .and_then(|s| s.chars().next_back())
                } else {
                    prev
                };
            if prev.is_some_and(is_path_char) {
                // Inside a path, a home only after the root of another file system.
                let path_start = if text.get(..start).is_some_and(|s| s.ends_with('\\'))
                    && text.get(start..).is_some_and(|s| s.starts_with('/'))
                {
                    start.saturating_sub(1)
                } else {
                    start
                };
                let nested = after_mount(text.get(..path_start).unwrap_or(""));
                group("u_unix").map(|u| (u, Shape::Nested, nested))
            } else {
                group("u_unix").map(|u| (u, Shape::Unix, true))
            }
        } else {
            group("u_pct").map(|u| (u, Shape::PercentEncoded, true))
        };
        match found {
            Some((user, shape, true)) => {
                let user = trim_user(text, user);
                let host = if shape == Shape::Unc {
                    slashed_unc_host(text, start)
                } else {
                    None
                };
                let hit = HomeHit {
                    home: start..user.end,
                    user,
                    shape,
                    host,
                };
                // A home on another file system only with a path after the user: so
                // `sftp://host/home/index` is no home.
                if let Some(name) = text.get(hit.user.clone())
                    && !name.is_empty()
                    && !NOT_USERS
                        .iter()
                        .any(|n| decode(name).eq_ignore_ascii_case(n))
                    && (shape != Shape::Nested || hit.continues(text))
                {
                    next_pos = next_pos.min(hit.user.end.max(next_char(text, start)));
                    hits.push(hit);
                }
            }
            // A rejected match may hide a real one starting inside it.
            _ => next_pos = next_char(text, start),
        }
        pos = next_pos;
    }
    hits
}

/// The host of a UNC path written with slashes that starts at `start` (`//server/...`), if
/// it names a machine.
fn slashed_unc_host(text: &str, start: usize) -> Option<Range<usize>> {
    let rest = text.get(start..)?.strip_prefix("//")?;
    let len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '$' | '-')))
        .unwrap_or(rest.len());
    let host = rest.get(..len)?;
    (!host.is_empty() && crate::matches::names_machine(host)).then(|| start + 2..start + 2 + len)
}

fn next_char(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .map_or(at + 1, |c| at + c.len_utf8())
}

/// Drops trailing dots, spaces and quotes: `see /home/bob.` names `bob`.
fn trim_user(text: &str, user: Range<usize>) -> Range<usize> {
    let name = text.get(user.clone()).unwrap_or("");
    let trimmed = name.trim_end_matches(['.', ' ', '\'']);
    user.start..user.start + trimmed.len()
}

/// A user segment as a name: percent-encoded bytes decoded (`bob%20smith` is `bob smith`,
/// `j%C3%B6rg` is `jörg`).
pub(crate) fn decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_owned();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |at: usize| bytes.get(at).and_then(|h| char::from(*h).to_digit(16));
        if b == b'%'
            && let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2))
        {
            // Two hex digits make a byte: at most 0xff.
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user name if `home` is, as a whole, a standard home directory.
pub(crate) fn user_of_home_dir(home: &str) -> Option<String> {
    let trimmed = home.trim_end_matches(['/', '\\']);
    // A separator after the home lets a Windows user name with spaces match as a whole.
    let probe = format!("{trimmed}/");
    let hits = home_hits(&probe);
    match hits.as_slice() {
        [hit] if hit.home == (0..trimmed.len()) => trimmed.get(hit.user.clone()).map(decode),
        _ => None,
    }
}

/// Home directories of the running user that are not standard (`/root`, `/var/lib/jenkins`):
/// found literally, in the spellings a path takes in events (separators swapped or
/// JSON-escaped).
#[derive(Debug, Default)]
pub(crate) struct HomeLiterals {
    matcher: Option<AhoCorasick>,
    patterns: Vec<String>,
}

impl HomeLiterals {
    pub(crate) fn new(homes: &[String]) -> Result<Self, BuildError> {
        let mut patterns: Vec<String> = Vec::new();
        for home in homes {
            let home = home.trim_end_matches(['/', '\\']);
            if home.len() < 2 {
                continue;
            }
            let slashed = home.replace('\\', "/");
            let backslashed = home.replace('/', "\\");
            for variant in [
                home.to_owned(),
                slashed.replace('/', "\\/"),
                slashed,
                backslashed.clone(),
                backslashed.replace('\\', "\\\\"),
            ] {
                if !patterns.contains(&variant) {
                    patterns.push(variant);
                }
            }
        }
        if patterns.is_empty() {
            return Ok(HomeLiterals::default());
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .ascii_case_insensitive(true)
            .build(&patterns)
            .map_err(|err| BuildError::Rule {
                rule: "home-path".to_owned(),
                message: err.to_string(),
            })?;
        Ok(HomeLiterals {
            matcher: Some(matcher),
            patterns,
        })
    }

    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Spans of the running user's non-standard home in `text`, each starting a path and
    /// ending at a separator or the end of the path.
    pub(crate) fn find(&self, text: &str) -> Vec<Range<usize>> {
        let Some(matcher) = &self.matcher else {
            return Vec::new();
        };
        crate::matches::select_matches(matcher, text, |_, range| {
            let before = text.get(..range.start).unwrap_or("");
            let prev = before.chars().next_back();
            let next = text.get(range.end..).and_then(|s| s.chars().next());
            let continues = prev.is_some_and(is_path_char) || next.is_some_and(is_path_char);
            let spaced = next == Some(' ') && longer_home(text, range);
            !(continues || spaced || after_drive(before))
        })
        .into_iter()
        .map(|(_, range)| range)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> Vec<&str> {
        home_hits(text)
            .iter()
            .map(|hit| text.get(hit.user.clone()).unwrap())
            .collect()
    }

    #[test]
    fn finds_homes() {
        assert_eq!(users("/home/bob/x and /Users/carol/y"), ["bob", "carol"]);
        assert_eq!(users(r"C:\Users\John Smith\AppData"), ["John Smith"]);
        assert_eq!(users(r"C:\Users\bob is here"), ["bob"]);
        assert_eq!(users(r"C:\\Users\\bob\\x"), ["bob"]);
        assert_eq!(users(r"\\?\C:\Users\bob\x"), ["bob"]);
        assert_eq!(users("/mnt/c/Users/bob/x"), ["bob"]);
        assert_eq!(users("file:///home/bob%20smith/x"), ["bob%20smith"]);
        assert_eq!(users("%2Fhome%2Fbob%2Fx"), ["bob"]);
        assert_eq!(users(r"\\wsl$\Ubuntu\home\bob\x"), ["bob"]);
        assert_eq!(users("see /home/bob."), ["bob"]);
        assert_eq!(users(r"\\fs\c$\Users\dave\x"), ["dave"]);
        assert_eq!(users(r"\\fs\home\dave\x"), ["dave"]);
        assert_eq!(users("//fs/Users/dave/x"), ["dave"]);
        assert_eq!(users("file:///home/j%C3%B6rg/x"), ["j%C3%B6rg"]);
        assert_eq!(users(r"cwd: C:\Users\Alice Smith"), ["Alice Smith"]);
        assert_eq!(users(r"C:\Users\Alice Smith said hi"), ["Alice Smith"]);
        assert_eq!(users(r#""C:\Users\alice smith""#), ["alice smith"]);
        assert_eq!(users(r"C:\Users\O'Brien\x"), ["O'Brien"]);
        assert_eq!(users(r"'/home/bob'"), ["bob"]);
        assert_eq!(users(r"\/home\/bob\/x"), ["bob"]);
        assert!(users("https://example.com/Users/bob/x").is_empty());
        assert!(users(r"x\/home\/bob").is_empty());
        assert!(users("/opt/app/home/config").is_empty());
        assert!(users("https://example.com/home/index.html").is_empty());
        assert!(users("/Users/Shared/x").is_empty());
        assert!(users("/home/<user>/x").is_empty());
        assert!(users("~/src/main.rs").is_empty());
    }

    #[test]
    fn finds_homes_in_other_spellings() {
        // JSON with every slash escaped as \u002f (Java's and .NET's encoders, PHP's `\/`).
        assert_eq!(users(r"open \u002fhome\u002fjdoe\u002fx"), ["jdoe"]);
        assert_eq!(users(r"open \u002FUsers\u002Fjdoe"), ["jdoe"]);
        assert_eq!(users(r"C:\u005cUsers\u005cjdoe\u005cx"), ["jdoe"]);
        assert!(users(r"x\u002fhome\u002fbob").is_empty());
        // NFS and AFS layouts.
        assert_eq!(users("/homes/jdoe/x"), ["jdoe"]);
        assert_eq!(users("/nfs/homes/jdoe/x"), ["jdoe"]);
        assert_eq!(users("/afs/cern.ch/user/j/jdoe/x"), ["jdoe"]);
        assert_eq!(users("/afs/example.edu/home/jdoe"), ["jdoe"]);
        assert!(users("/opt/afs/cern.ch/user/j/jdoe/x").is_empty());
        assert!(users("/afs/cern.ch/user/j/<user>/x").is_empty());
        assert_eq!(users(r"open \\fs01\profiles$\mkowalski\x"), ["mkowalski"]);
        assert_eq!(users(r"D:\Profiles\mkowalski\AppData"), ["mkowalski"]);
        assert_eq!(users("in /home2/jdoe/public_html/index.php"), ["jdoe"]);
        // The shell's ~user.
        assert_eq!(
            users("cannot open ~jdoe/notes and '~kim/x'"),
            ["jdoe", "kim"]
        );
        assert!(users(r"C:\PROGRA~1\app and ~root/x and ~jdoe alone").is_empty());
        assert!(users("a~b/c and https://example.com/~jdoe/x").is_empty());
    }

    #[test]
    fn finds_homes_on_other_file_systems() {
        let shapes =
            |text: &str| -> Vec<Shape> { home_hits(text).iter().map(|h| h.shape).collect() };
        assert_eq!(users("/System/Volumes/Data/Users/bob/x"), ["bob"]);
        assert_eq!(users("/Volumes/Backup/Users/bob/x"), ["bob"]);
        assert_eq!(users("/nfs/home/bob/x.rs"), ["bob"]);
        assert_eq!(users("/mnt/home/bob/x.rs"), ["bob"]);
        assert_eq!(users("/net/host/home/bob/x"), ["bob"]);
        assert_eq!(users("sftp://host/home/bob/x"), ["bob"]);
        assert_eq!(users("SSH://user@host:22/Users/bob/x"), ["bob"]);
        assert_eq!(shapes("/mnt/home/bob/x"), [Shape::Nested]);
        assert!(!Shape::Nested.may_be_own());
        assert!(users("/api/home/dashboard").is_empty());
        assert!(users("/api/home/dashboard/x").is_empty());
        assert!(users("/mnt/home/dashboard").is_empty());
        assert!(users("/opt/mnt/home/bob/x").is_empty());
        assert!(users("https://host/home/bob/x").is_empty());
        // Far from the start of the path, and a volume name longer than the look-back (which
        // cuts at a character boundary).
        let long = format!("/{}/mnt/home/bob/x", "a".repeat(MOUNT_LOOKBACK * 2));
        assert!(users(&long).is_empty());
        let long = format!("/Volumes/{}/Users/bob/x", "\u{e9}".repeat(MOUNT_LOOKBACK));
        assert!(users(&long).is_empty());
    }

    #[test]
    fn hosts_of_slashed_unc_paths() {
        let hosts = |text: &str| -> Vec<String> {
            home_hits(text)
                .iter()
                .filter_map(|h| h.host.clone().and_then(|r| text.get(r)).map(str::to_owned))
                .collect()
        };
        assert_eq!(hosts("//server/Users/bob/x"), ["server"]);
        assert_eq!(hosts("file://nas7/home/bob"), ["nas7"]);
        assert_eq!(hosts("smb://nas7/Users/bob/x"), ["nas7"]);
        assert!(hosts("xsmb://nas7/Users/bob/x").is_empty());
        assert!(hosts("file://localhost/home/bob/x").is_empty());
        assert!(hosts(r"\\server\Users\bob\x").is_empty());
        assert!(hosts("file:///home/bob/x").is_empty());
    }

    #[test]
    fn decodes_user_segments() {
        assert_eq!(decode("j%C3%B6rg"), "j\u{f6}rg");
        assert_eq!(decode("O%27Brien"), "O'Brien");
        assert_eq!(decode("bob%20smith"), "bob smith");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn standard_home_dirs() {
        assert_eq!(user_of_home_dir("/home/alice").as_deref(), Some("alice"));
        assert_eq!(user_of_home_dir("/home/alice/").as_deref(), Some("alice"));
        assert_eq!(
            user_of_home_dir(r"C:\Users\Alice Smith").as_deref(),
            Some("Alice Smith")
        );
        assert_eq!(user_of_home_dir("/root"), None);
        assert_eq!(user_of_home_dir("/home/alice/work"), None);
    }

    #[test]
    fn literal_homes() {
        let lits = HomeLiterals::new(&["/var/lib/jenkins".to_owned()]).unwrap();
        assert_eq!(lits.find("/var/lib/jenkins/ws/x"), vec![0..16]);
        assert!(lits.find("/var/lib/jenkins2/x").is_empty());
        assert!(lits.find("/opt/var/lib/jenkins").is_empty());
    }
}
