//! Home directories in paths: `/home/<user>`, `/Users/<user>`, `C:\Users\<user>` in every
//! spelling, WSL's `/mnt/c/Users/<user>` and `\\wsl$\<distro>\home\<user>`, and their
//! percent-encoded forms.
//!
//! One regex finds them all; the code around it does what the regex crate cannot (no
//! look-behind): it checks that a match starts a path rather than continuing one
//! (`/opt/app/home/config` is no home), and decides per match whether it is the running
//! user's home (becomes `~`) or someone else's (the user segment becomes a placeholder).

use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use crate::error::BuildError;

/// A path separator as it appears in paths, JSON-escaped text and percent-encoded URLs.
const SEP: &str = r"(?:/|\\{1,4}|%2[Ff]|%5[Cc])";
/// A user segment without spaces (`%20` is allowed: file URLs encode spaces).
const USER: &str = r#"(?:[^/\\\s<>:"'|?*%(){}\[\],;=&#@`]|%20)+"#;
/// A Windows user segment, which may contain spaces; only accepted when a separator follows,
/// so that `C:\Users\bob is here` does not take the rest of the sentence.
const USER_SPACED: &str = r#"(?:[^/\\\r\n\t<>:"'|?*%(){}\[\],;=&#@`]|%20)+"#;

/// The home-path regex and the indices of its groups, looked up once.
struct HomeRegex {
    re: Regex,
    groups: [usize; 11],
}

const GROUP_NAMES: [&str; 11] = [
    "wsl", "u_wsl", "mnt", "u_mnt1", "u_mnt2", "win", "u_win1", "u_win2", "unix", "u_unix", "u_pct",
];

static HOME_RE: LazyLock<Result<HomeRegex, regex::Error>> = LazyLock::new(|| {
    let pattern = [
        // \\wsl$\Ubuntu\home\bob and \\wsl.localhost\Ubuntu\home\bob
        format!(
            r"(?P<wsl>\\{{2,4}}(?i:wsl\$|wsl\.localhost)\\{{1,2}}[^\\/\s]+\\{{1,2}}home\\{{1,2}})(?P<u_wsl>{USER})"
        ),
        // /mnt/c/Users/bob (WSL), /cygdrive/c/Users/bob (Cygwin), /c/Users/bob (MSYS)
        format!(
            r"(?P<mnt>(?:/mnt|/cygdrive)?/[A-Za-z]/(?i:users)/)(?:(?P<u_mnt1>{USER_SPACED})/|(?P<u_mnt2>{USER}))"
        ),
        // C:\Users\bob, c:/users/bob, C:\\Users\\bob, \\?\C:\Users\bob, C%3A%5CUsers%5Cbob
        format!(
            r"(?P<win>(?:\\{{2,4}}[?.]\\{{1,2}})?[A-Za-z](?::|%3[Aa]){SEP}(?i:users|documents and settings){SEP})(?:(?P<u_win1>{USER_SPACED}){SEP}|(?P<u_win2>{USER}))"
        ),
        // /home/bob, /Users/bob, /var/home/bob, /export/home/bob
        format!(r"(?P<unix>(?:/(?:var|usr|export))?/(?:home|Users)/)(?P<u_unix>{USER})"),
        // %2Fhome%2Fbob
        r"(?P<pct>%2[Ff](?:home|Users)%2[Ff])(?P<u_pct>[A-Za-z0-9._-]+)".to_owned(),
    ]
    .join("|");
    let re = Regex::new(&pattern)?;
    let mut groups = [0; 11];
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

/// Words every home path holds, to skip the regex where none is left.
static HOME_WORDS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(["home", "users", "documents and settings"])
        .ok()
});

/// Whether `text` may hold a home path at all.
pub(crate) fn may_hold_home(text: &str) -> bool {
    HOME_WORDS.as_ref().is_none_or(|ac| ac.is_match(text))
}

/// Checks at build time that the home-path regex compiles, so scrubbing never meets a broken
/// one.
pub(crate) fn check_compiled() -> Result<(), BuildError> {
    match &*HOME_RE {
        Ok(_) => Ok(()),
        Err(err) => Err(BuildError::Pattern {
            rule: "home-path".to_owned(),
            message: err.to_string(),
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
    /// `C:\Users\user`
    Windows,
    /// `/home/user`, `/Users/user`
    Unix,
    /// `%2Fhome%2Fuser`
    PercentEncoded,
}

/// One home directory found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HomeHit {
    /// From the start of the path to the end of the user segment.
    pub(crate) home: Range<usize>,
    /// The user segment.
    pub(crate) user: Range<usize>,
    pub(crate) shape: Shape,
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
                .or_else(|| group("u_win2"))
                .map(|u| (u, Shape::Windows, ok))
        } else if group("unix").is_some() {
            group("u_unix").map(|u| (u, Shape::Unix, !prev.is_some_and(is_path_char)))
        } else {
            group("u_pct").map(|u| (u, Shape::PercentEncoded, true))
        };
        match found {
            Some((user, shape, true)) => {
                let user = trim_user(text, user);
                if let Some(name) = text.get(user.clone())
                    && !name.is_empty()
                    && !NOT_USERS
                        .iter()
                        .any(|n| decode(name).eq_ignore_ascii_case(n))
                {
                    hits.push(HomeHit {
                        home: start..user.end,
                        user,
                        shape,
                    });
                }
            }
            // A rejected match may hide a real one starting inside it.
            _ => next_pos = next_char(text, start),
        }
        pos = next_pos;
    }
    hits
}

fn next_char(text: &str, at: usize) -> usize {
    text.get(at..)
        .and_then(|s| s.chars().next())
        .map_or(at + 1, |c| at + c.len_utf8())
}

/// Drops trailing dots and spaces: `see /home/bob.` names `bob`.
fn trim_user(text: &str, user: Range<usize>) -> Range<usize> {
    let name = text.get(user.clone()).unwrap_or("");
    let trimmed = name.trim_end_matches(['.', ' ']);
    user.start..user.start + trimmed.len()
}

/// A user segment as a name: `%20` back to a space.
pub(crate) fn decode(segment: &str) -> String {
    segment.replace("%20", " ")
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
        crate::identity::select_matches(matcher, text, |_, range| {
            let prev = text.get(..range.start).and_then(|s| s.chars().next_back());
            let next = text.get(range.end..).and_then(|s| s.chars().next());
            !prev.is_some_and(is_path_char) && !next.is_some_and(is_path_char)
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
        assert!(users("/opt/app/home/config").is_empty());
        assert!(users("https://example.com/home/index.html").is_empty());
        assert!(users("/Users/Shared/x").is_empty());
        assert!(users("/home/<user>/x").is_empty());
        assert!(users("~/src/main.rs").is_empty());
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
