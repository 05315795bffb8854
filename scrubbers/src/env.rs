//! Secret values of the process environment, found wherever they appear.

use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::error::BuildError;
use crate::identity::select_matches;
use crate::validate::{is_secret_env_name, token_like};

/// Values shorter than this are never chased: too many false hits, too little secret.
const MIN_LEN: usize = 6;
/// Values shorter than this only match as whole tokens.
const SUBSTRING_LEN: usize = 12;

/// Name parts that leave no doubt the value is a secret, even a plain word
/// (`DB_PASSWORD=sunshine`).
const STRONG_ENV_PARTS: &[&str] = &["PASSWORD", "PASSWD", "SECRET", "TOKEN"];

/// Whether a value of a secret-named variable is worth chasing through events. Plain words
/// and small numbers (`XDG_SESSION_ID=2`, `FOO_AUTH_MODE=kerberos`) are settings, not secrets,
/// unless the name says password, secret or token.
fn worth_chasing(name: &str, value: &str) -> bool {
    let value = value.trim();
    if value.chars().count() < MIN_LEN {
        return false;
    }
    let upper = name.to_ascii_uppercase();
    let strong = STRONG_ENV_PARTS.iter().any(|p| upper.contains(p));
    let plain_word =
        !strong && value.chars().all(char::is_alphabetic) && value.chars().count() <= 12;
    let small_number = value.bytes().all(|b| b.is_ascii_digit()) && value.len() < 8;
    let boolean = matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "enabled" | "disabled"
    );
    !(plain_word || small_number || boolean) || token_like(value)
}

/// The password in a URL with credentials (`postgres://user:pass@host/db`).
fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    Some(password)
}

/// The secret values among the environment's pairs.
pub(crate) fn secret_values(pairs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str, value: &str| {
        let value = value.trim();
        if worth_chasing(name, value) && !out.iter().any(|v| v == value) {
            out.push(value.to_owned());
        }
    };
    for (name, value) in pairs {
        if is_secret_env_name(name) {
            push(name, value);
        }
        // `DATABASE_URL=postgres://app:hunter2@db/app`: the whole URL and its password.
        if let Some(password) = url_password(value) {
            push("", value);
            push("", password);
        }
    }
    out
}

/// Finds the secret values: long ones anywhere, short ones as whole tokens.
#[derive(Debug, Default)]
pub(crate) struct EnvMatcher {
    ac: Option<AhoCorasick>,
    /// Per pattern: whether it must be a whole token.
    token_only: Vec<bool>,
    patterns: Vec<String>,
}

impl EnvMatcher {
    pub(crate) fn new(values: Vec<String>) -> Result<Self, BuildError> {
        if values.is_empty() {
            return Ok(EnvMatcher::default());
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&values)
            .map_err(|err| BuildError::Rule {
                rule: "env-secret".to_owned(),
                message: err.to_string(),
            })?;
        Ok(EnvMatcher {
            ac: Some(ac),
            token_only: values.iter().map(|v| v.len() < SUBSTRING_LEN).collect(),
            patterns: values,
        })
    }

    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub(crate) fn find(&self, text: &str) -> Vec<Range<usize>> {
        let Some(ac) = &self.ac else {
            return Vec::new();
        };
        select_matches(ac, text, |pattern, range| {
            !self.token_only.get(pattern).copied().unwrap_or(true) || {
                let prev = text.get(..range.start).and_then(|s| s.chars().next_back());
                let next = text.get(range.end..).and_then(|s| s.chars().next());
                !prev.is_some_and(char::is_alphanumeric) && !next.is_some_and(char::is_alphanumeric)
            }
        })
        .into_iter()
        .map(|(_, range)| range)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn harvests_secret_values() {
        let values = secret_values(&pairs(&[
            ("GITHUB_TOKEN", "ghp_abcdefghijklmnop1234"),
            ("DATABASE_URL", "postgres://app:s3cr3t-pw@db/app"),
            ("XDG_SESSION_TYPE", "wayland"),
            ("XDG_SESSION_CLASS", "user"),
            ("RUST_LOG", "debug"),
            ("API_KEY", "short"),
            ("MY_AUTH_MODE", "kerberos"),
        ]));
        assert_eq!(
            values,
            [
                "ghp_abcdefghijklmnop1234",
                "postgres://app:s3cr3t-pw@db/app",
                "s3cr3t-pw"
            ]
        );
    }

    #[test]
    fn short_values_are_tokens() {
        let m =
            EnvMatcher::new(vec!["pa55word".to_owned(), "x-very-long-secret".to_owned()]).unwrap();
        assert_eq!(m.find("pa55words pa55word"), vec![10..18]);
        assert_eq!(m.find("ax-very-long-secretz"), vec![1..19]);
    }
}
