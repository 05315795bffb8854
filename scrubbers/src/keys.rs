//! Matching map keys (and `name=value` names) against word lists.
//!
//! Keys are compared by words, ignoring case and separators, so that `api_key` matches
//! `apiKey`, `X-Api-Key` and `API_KEYS` but `author` does not match `auth` and `monkey` does
//! not match `key`.

use std::collections::HashSet;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;

use crate::error::BuildError;

/// The longest key compared word by word; longer keys are compared by their first words.
const MAX_WORDS: usize = 16;

/// Names whose value is a secret. Each entry is its words run together in lower case, so
/// `api_key`, `apiKey` and `apikey` are all `apikey`.
pub(crate) const SECRET_NAMES: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "passphrase",
    "mysqlpwd",
    "secret",
    "secrets",
    "clientsecret",
    "token",
    "apikey",
    "apitoken",
    "auth",
    "authorization",
    "proxyauthorization",
    "credential",
    "credentials",
    "privatekey",
    "cookie",
    "cookies",
    "setcookie",
    "session",
    "sessionid",
    "sessionkey",
    "sid",
    "csrf",
    "csrftoken",
    "xsrf",
    "xsrftoken",
    "phpsessid",
    "connectsid",
    "symfony",
    "username",
    "creds",
    "cred",
    "otp",
    "totp",
    "twofactor",
    "mfacode",
    "xforwardedfor",
    "forwardedfor",
    "xrealip",
    "pass",
    "pw",
    "pwd",
    "passcode",
    "pin",
    "signature",
    "jwt",
    "bearer",
];

/// Names where `name: value` in prose is a credential whatever the value looks like.
const STRONG_SECRET_NAMES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "mysqlpwd",
    "secret",
    "clientsecret",
    "apikey",
    "privatekey",
    "credentials",
    "cookie",
    "setcookie",
];

/// Query parameters that carry credentials beyond [`SECRET_NAMES`]: signed URLs, OAuth codes,
/// `?key=` API keys.
const SECRET_PARAM_EXTRA: &[&str] = &[
    "jsessionid",
    "aspxauth",
    "sessid",
    "key",
    "sig",
    "signature",
    "code",
    "pwd",
    "pass",
    "jwt",
    "bearer",
    "accesskey",
];

/// Splits a key into lower-case words at separators and case changes: `X-Api-Key` ->
/// `x api key`, `sessionID` -> `session id`, `PHPSESSID` -> `phpsessid`.
pub(crate) fn words(key: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = key.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let boundary = match prev {
            Some(p) if c.is_uppercase() => {
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            }
            _ => false,
        };
        if boundary && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
        if out.len() >= MAX_WORDS {
            break;
        }
    }
    if !current.is_empty() && out.len() < MAX_WORDS {
        out.push(current);
    }
    out
}

/// Words that may follow a secret name without changing what the value is: `session_id`,
/// `password_hash`, `AWS_SECRET_ACCESS_KEY`. Any other word after the name makes the key about
/// something else (`token_count`, `session_start`), so its value stays.
const TRAILING_WORDS: &[&str] = &[
    "id", "ids", "value", "values", "key", "keys", "hash", "data", "header", "headers", "string",
    "str", "b64", "base64", "hex", "raw", "text", "access", "env", "var", "file", "path",
];

/// Whether some run of consecutive words of `key`, joined, is a name, followed by nothing but
/// [`TRAILING_WORDS`]. Digits at either end of a word do not count (`token1`, `1password`,
/// `2fa`), nor does a leading `$`, `@` or `-` (`$password`, `--token`).
fn any_run_in(key: &str, contains: impl Fn(&str) -> bool) -> bool {
    let words: Vec<String> = words(key)
        .into_iter()
        .map(|w| {
            let t = w.trim_end_matches(|c: char| c.is_ascii_digit());
            if t.is_empty() { w } else { t.to_owned() }
        })
        .collect();
    for i in 0..words.len() {
        let mut joined = String::new();
        for (j, word) in words.iter().enumerate().skip(i) {
            joined.push_str(word);
            if contains(&joined)
                && words.iter().skip(j + 1).all(|w| {
                    TRAILING_WORDS.contains(&w.as_str()) || w.bytes().all(|b| b.is_ascii_digit())
                })
            {
                return true;
            }
        }
    }
    false
}

/// Parts of every secret name (of [`SECRET_NAMES`] and those [`is_weak_secret_key`] takes):
/// a key without any of them is no secret's, which settles most keys without splitting
/// them into words.
const HINTS: &[&str] = &[
    "pass", "pw", "secret", "token", "key", "auth", "cred", "otp", "sess", "sid", "csrf", "xsrf",
    "cookie", "private", "user", "jwt", "bearer", "sig", "pin", "login", "forward", "real",
    "factor", "bundle", "mfa", "api", "symfony",
];

static HINT_FINDER: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(HINTS)
        .ok()
});

/// Whether `key` may name a secret at all (see [`HINTS`]).
fn has_hint(key: &str) -> bool {
    HINT_FINDER.as_ref().is_none_or(|ac| ac.is_match(key))
}

/// Whether a key or `name=` holds a secret by its name. Bundler's per-host credentials
/// (`BUNDLE_GEMS__EXAMPLE__COM=user:pass`) count too.
/// Names of personal data, joined words (`first_name` = `firstName` = `firstname`): what a
/// quoted pair in a text (a Python dict's repr, JSON inside a string) must not keep.
const PERSONAL_NAMES: &[&str] = &[
    "firstname",
    "lastname",
    "fullname",
    "givenname",
    "familyname",
    "displayname",
    "realname",
    "surname",
    "forename",
    "maidenname",
    "middlename",
    "cardholdername",
    "customername",
    "accountholder",
    "accountholdername",
    "dob",
    "dateofbirth",
    "birthdate",
    "birthday",
    "phone",
    "phonenumber",
    "mobile",
    "mobilenumber",
    "mobilephone",
    "msisdn",
    "telephone",
    "telephonenumber",
    "ssn",
    "socialsecuritynumber",
    "passportnumber",
    "passportno",
    "nationalid",
    "taxid",
    "driverslicense",
    "driverslicensenumber",
    "drivinglicencenumber",
    "streetaddress",
    "homeaddress",
    "postaladdress",
    "addressline",
    "addressline1",
    "addressline2",
    "cpf",
    "bsn",
    "personnummer",
    "iban",
    "accountnumber",
    "cardnumber",
    "username",
];

/// Whether a quoted name in a text names personal data (its value goes whatever it is).
pub(crate) fn is_personal_key(key: &str) -> bool {
    let joined: String = words(key).concat();
    PERSONAL_NAMES.contains(&joined.as_str())
}

pub(crate) fn is_secret_key(key: &str) -> bool {
    if !has_hint(key) || negated(key) {
        return false;
    }
    let bundler = key.len() > 7
        && key
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bundle_"))
        && key.contains("__");
    bundler || any_run_in(key, |w| SECRET_NAMES.contains(&w))
}

/// Words that, first in a name, say its value is not a real secret: `not_secret`,
/// `nonMatchingToken`, `fake_token`, `dummy_password`, `example_api_key`.
const NEGATING_WORDS: &[&str] = &[
    "not",
    "non",
    "no",
    "fake",
    "dummy",
    "example",
    "sample",
    "mock",
    "placeholder",
    "invalid",
];

fn negated(key: &str) -> bool {
    let words = words(key.trim_start_matches(['$', '@', '-', '_']));
    words.len() >= 2
        && words
            .first()
            .is_some_and(|w| NEGATING_WORDS.contains(&w.as_str()))
}

/// English words ending in `key` that name no key.
const KEY_WORDS: &[&str] = &[
    "monkey", "donkey", "turkey", "hockey", "jockey", "whiskey", "husky", "lackey", "passkey",
];

/// Names that hold a secret when the value looks like one: anything ending in `key`
/// (`ENCRYPTION_KEY`, `stripeKey`, `AccountKey`, `HEROKU_KEY`), `login` and `access_id` of
/// API clients, and names of vendors' secrets in config files. Unlike [`is_secret_key`],
/// these also name harmless things (`primary_key`, `sort_key`), so the caller checks the
/// value (see `validate::looks_secret`).
pub(crate) fn is_weak_secret_key(key: &str) -> bool {
    if !has_hint(key) || negated(key) {
        return false;
    }
    let words = words(key);
    let Some(last) = words.iter().rev().find(|w| {
        !w.bytes().all(|b| b.is_ascii_digit()) && !TRAILING_KEY_NOISE.contains(&w.as_str())
    }) else {
        return false;
    };
    let last = last.trim_end_matches(|c: char| c.is_ascii_digit());
    // `key` alone names anything (`<add key="x" ...>`, `key: user:42`).
    if words.len() == 1 && last == "key" {
        return false;
    }
    // A secret's word anywhere in the name (`secret_key_base`, `password_salt`).
    let secret_word = words.iter().any(|w| {
        matches!(
            w.trim_end_matches(|c: char| c.is_ascii_digit()),
            "secret" | "password" | "passwd" | "token" | "credential" | "credentials" | "apikey"
        )
    });
    secret_word
        || (last.ends_with("key") && !KEY_WORDS.contains(&last))
        || last.ends_with("token")
        || last.ends_with("secret")
        || last.ends_with("password")
        || matches!(last, "login" | "pw" | "cred" | "creds")
}

/// Words after a name's last word that change nothing (`API_KEY_ENV`, `token_value`).
const TRAILING_KEY_NOISE: &[&str] = &[
    "value", "str", "string", "env", "var", "b64", "base64", "hex", "raw",
];

/// Words that name a secret wherever they stand in a map key (`a_password_here`,
/// `password_confirmation`, `new_password1`, `the_secret`, `stripe_api_key_live`).
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "credential",
    "credentials",
    "token",
    "pwd",
];

/// Words that make a key about a secret rather than the secret itself (`password_length`,
/// `token_type`, `secret_name`, `password_reset_url`).
const QUALIFIERS: &[&str] = &[
    "count",
    "length",
    "len",
    "min",
    "max",
    "policy",
    "enabled",
    "required",
    "hint",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "age",
    "url",
    "uri",
    "path",
    "file",
    "name",
    "type",
    "format",
    "strength",
    "changed",
    "updated",
    "created",
    "at",
    "set",
    "valid",
    "validation",
    "rule",
    "rules",
    "field",
    "fields",
    "label",
    "placeholder",
    "regex",
    "pattern",
    "reset",
    "forgot",
    "mode",
    "strategy",
    "provider",
    "version",
    "limit",
    "timeout",
    "retries",
    "id",
    "ids",
    "source",
    "location",
    "store",
    "manager",
    "prompt",
    "error",
    "errors",
    "is",
    "has",
    "use",
    "uses",
    "should",
    "needs",
    "kind",
    "scope",
    "scopes",
    "algorithm",
    "alg",
    "hash",
    "hashed",
    "hasher",
    "salt",
    "rotation",
    "rotated",
    "last",
    "used",
    "usage",
    "index",
];

/// Whether a map key names a secret though words around the secret's word are not in the
/// list of [`is_secret_key`]: a key is a name, not prose, so a secret's word anywhere
/// counts unless another word qualifies it (`password_length`).
pub(crate) fn is_secret_map_key(key: &str) -> bool {
    if key.len() > 64 || !has_hint(key) || negated(key) {
        return false;
    }
    let words: Vec<String> = words(key)
        .into_iter()
        .map(|w| w.trim_end_matches(|c: char| c.is_ascii_digit()).to_owned())
        .collect();
    let joined_pairs = words
        .windows(2)
        .map(|w| w.concat())
        .any(|pair| SECRET_WORDS.contains(&pair.as_str()));
    (joined_pairs || words.iter().any(|w| SECRET_WORDS.contains(&w.as_str())))
        && !words.iter().any(|w| QUALIFIERS.contains(&w.as_str()))
}

/// Keys that hold a client's network address (`ip_address`, `REMOTE_ADDR`,
/// `X-Forwarded-For`, `X-Real-IP`, `client_ip`).
pub(crate) fn is_ip_key(key: &str) -> bool {
    let has = |part: &[u8]| {
        key.as_bytes()
            .windows(part.len())
            .any(|w| w.eq_ignore_ascii_case(part))
    };
    if key.len() > 32 || !(has(b"ip") || has(b"addr") || has(b"forwarded")) {
        return false;
    }
    let joined: String = words(key).concat();
    matches!(
        joined.as_str(),
        "ip" | "ipaddress"
            | "ipaddr"
            | "remoteaddr"
            | "remoteaddress"
            | "remoteip"
            | "xforwardedfor"
            | "forwardedfor"
            | "xrealip"
            | "realip"
            | "clientip"
            | "clientaddress"
            | "useripaddress"
    )
}

/// Whether `name: value` is a credential whatever the value (see [`STRONG_SECRET_NAMES`]).
pub(crate) fn is_strong_secret_key(key: &str) -> bool {
    any_run_in(key, |w| STRONG_SECRET_NAMES.contains(&w))
}

/// Whether a query parameter holds a secret by its name.
pub(crate) fn is_secret_param(name: &str) -> bool {
    any_run_in(name, |w| {
        SECRET_NAMES.contains(&w) || SECRET_PARAM_EXTRA.contains(&w)
    })
}

/// A compiled list of key names for a `kind = "key"` rule.
#[derive(Debug)]
pub(crate) struct KeyMatcher {
    names: HashSet<String>,
    /// Finds any name inside a key reduced to lower-case letters and digits: a cheap test
    /// that rejects almost every key before the word-by-word comparison.
    prefilter: AhoCorasick,
}

impl KeyMatcher {
    pub(crate) fn new(rule: &str, keys: &[String]) -> Result<Self, BuildError> {
        let mut names = HashSet::new();
        for key in keys {
            let joined: String = words(key).concat();
            if joined.is_empty() {
                return Err(BuildError::Rule {
                    rule: rule.to_owned(),
                    message: format!("key `{key}` has no letters or digits"),
                });
            }
            names.insert(joined);
        }
        if names.is_empty() {
            return Err(BuildError::Rule {
                rule: rule.to_owned(),
                message: "kind `key` needs a non-empty `keys` list".to_owned(),
            });
        }
        let prefilter = AhoCorasick::new(names.iter()).map_err(|err| BuildError::Rule {
            rule: rule.to_owned(),
            message: err.to_string(),
        })?;
        Ok(KeyMatcher { names, prefilter })
    }

    pub(crate) fn matches(&self, key: &str) -> bool {
        let mut buf = [0u8; 64];
        let mut len = 0;
        let mut long = Vec::new();
        for c in key.chars().flat_map(char::to_lowercase) {
            if !c.is_alphanumeric() {
                continue;
            }
            let mut tmp = [0u8; 4];
            for &b in c.encode_utf8(&mut tmp).as_bytes() {
                if let Some(slot) = buf.get_mut(len) {
                    *slot = b;
                } else {
                    if long.is_empty() {
                        long.extend_from_slice(&buf);
                    }
                    long.push(b);
                }
                len += 1;
            }
        }
        let squeezed: &[u8] = if long.is_empty() {
            buf.get(..len).unwrap_or(&[])
        } else {
            &long
        };
        if !self.prefilter.is_match(squeezed) {
            return false;
        }
        any_run_in(key, |w| self.names.contains(w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(words("X-Api-Key"), ["x", "api", "key"]);
        assert_eq!(words("sessionID"), ["session", "id"]);
        assert_eq!(words("APIKey"), ["api", "key"]);
        assert_eq!(words("PHPSESSID"), ["phpsessid"]);
        assert_eq!(words("connect.sid"), ["connect", "sid"]);
        assert_eq!(
            words("aws_secret_access_key"),
            ["aws", "secret", "access", "key"]
        );
    }

    #[test]
    fn secret_keys() {
        for key in [
            "password",
            "Password",
            "user_password",
            "passwords",
            "apiKey",
            "X-Api-Key",
            "API_KEY",
            "access_token",
            "Authorization",
            "Cookie",
            "set-cookie",
            "sessionid",
            "csrftoken",
            "private_key",
            "AWS_SECRET_ACCESS_KEY",
            "connect.sid",
            "username",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in [
            "author",
            "monkey",
            "key",
            "filename",
            "tokenizer",
            "oauth_provider",
            "abs_path",
            "keyboard",
            "passenger",
            "token_count",
            "session_start",
            "max_tokens",
        ] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn key_matcher() {
        let m = KeyMatcher::new("r", &["api_key".to_owned(), "pin".to_owned()]).unwrap();
        assert!(m.matches("apiKey"));
        assert!(m.matches("X-API-KEY"));
        assert!(m.matches("PIN"));
        assert!(!m.matches("spinner"));
        assert!(!m.matches("pinned"));
        let long = format!("{}_api_key", "x".repeat(100));
        assert!(m.matches(&long));
    }
}
