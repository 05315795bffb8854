//! Checks a regex match must pass before it is redacted: checksums (Luhn, IBAN), value
//! ranges (IP octets, SSN areas) and context the regex crate cannot express (no look-around).

use std::net::Ipv6Addr;
use std::ops::Range;

use regex::Captures;

use crate::config::Validator;
use crate::keys;

/// Whether a validator looks at capture groups (the others only need the match's span).
pub(crate) fn needs_captures(validator: Validator) -> bool {
    matches!(
        validator,
        Validator::SecretParam
            | Validator::Imei
            | Validator::NationalId
            | Validator::SecretAssignment
            | Validator::SecretElement
            | Validator::SecretFlag
            | Validator::RandomAssignment
            | Validator::EnvName
            | Validator::AuthCredential
            | Validator::UserAtHost
            | Validator::Principal
            | Validator::PersonalPair
            | Validator::ConnectionString
            | Validator::LogUser
    )
}

/// The span to redact if the match passes, else `None`. The span may be narrower than the
/// match (an IBAN whose regex ran into the next word). `caps` is `None` for validators that
/// do not [need captures](needs_captures).
pub(crate) fn check(
    validator: Validator,
    hay: &str,
    caps: Option<&Captures<'_>>,
    span: Range<usize>,
) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let ok = match validator {
        Validator::Ipv4 => ipv4(hay, span.clone(), text),
        Validator::Ipv6 => return ipv6(hay, span),
        Validator::Mac => mac(hay, span.clone(), text),
        Validator::Card => card(hay, span.clone(), text),
        Validator::Iban => return iban(hay, span),
        Validator::Ssn => ssn(hay, span.clone(), text),
        Validator::Phone => phone(hay, span.clone(), text),
        Validator::PhoneNational => phone_national(hay, span.clone(), text),
        Validator::CryptoAddress => crypto_address(text),
        Validator::Imei => return imei(hay, caps, span),
        Validator::NationalId => national_id(hay, caps?, span.clone(), text),
        Validator::Email => return email(hay, span),
        Validator::HostShape => host_shape(hay, span.clone(), text),
        Validator::TokenLike => token_like(text),
        Validator::AuthCredential => return auth_credential(hay, caps?, span),
        Validator::SecretParam => {
            let name = caps.and_then(|caps| caps.name("name"))?.as_str();
            let inner = value_span(hay, span);
            let value = hay.get(inner.clone())?;
            let ok =
                keys::is_secret_param(name) && !harmless_value(value) && !same_word(name, value);
            return ok.then_some(inner);
        }
        Validator::SecretAssignment => return secret_assignment(hay, caps?, span),
        Validator::SecretElement => return secret_element(hay, caps?, span),
        Validator::SecretFlag => return secret_flag(hay, caps?, span),
        Validator::PemBody => pem_body(text),
        Validator::RandomAssignment => return random_assignment(hay, caps?, span),
        Validator::KubernetesSecret => kubernetes_secret(hay, span.clone(), text),
        Validator::SlackToken => slack_token(text),
        Validator::NotPlaceholder => !harmless_value(text.trim_matches(['\'', '"'])),
        Validator::DomainAccount => domain_account(hay, span.clone(), text),
        Validator::UserAtHost => return user_at_host(caps?),
        Validator::SecretWordValue => secret_word_value(text),
        Validator::UrlCredentials => return url_credentials(hay, span),
        Validator::LogUser => return log_user(hay, caps?),
        Validator::IdName => !matches!(
            text,
            "root"
                | "daemon"
                | "bin"
                | "sys"
                | "adm"
                | "wheel"
                | "sudo"
                | "staff"
                | "users"
                | "nogroup"
                | "nobody"
                | "docker"
                | "audio"
                | "video"
                | "plugdev"
                | "dialout"
                | "cdrom"
                | "lpadmin"
                | "netdev"
                | "systemd-journal"
                | "tty"
                | "disk"
                | "lp"
                | "mail"
                | "www-data"
                | "input"
                | "render"
                | "kvm"
                | "libvirt"
                | "admin"
        ),
        Validator::RedisPassword => {
            token_like(text)
                && !text
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        }
        Validator::Principal => return principal(caps?),
        Validator::ConnectionString => {
            let name = caps.and_then(|caps| caps.name("name"))?.as_str().trim();
            let inner = value_span(hay, span);
            let value = hay.get(inner.clone())?.trim_end();
            let user = [
                "user id",
                "userid",
                "uid",
                "user",
                "username",
                "user name",
                "login",
            ]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n));
            let ok = (user || keys::is_secret_param(name))
                && !value.is_empty()
                && !harmless_value(value)
                && !same_word(name, value);
            return ok.then(|| inner.start..inner.start + value.len());
        }
        Validator::PersonalPair => {
            let name = caps.and_then(|caps| caps.name("name"))?.as_str();
            // An address of a machine (`127.0.0.1:8080`, `0x7ffd...`, `[::1]:443`, a URL) is no
            // person's: other rules judge it.
            let machine = (text
                .starts_with(|c: char| c.is_ascii_digit() || matches!(c, '[' | ':'))
                && text.contains([':', '.', 'x', '/']))
                || text.contains("://");
            keys::is_personal_key(name)
                && !machine
                && !harmless_value(text)
                && !same_word(name, text)
        }
        Validator::KeyDetail => key_detail(text),
        Validator::DomainAccountName => {
            let upper = text.trim_end_matches('$').to_ascii_uppercase();
            !NOT_ACCOUNT_USERS.contains(&upper.as_str())
                && !matches!(
                    upper.as_str(),
                    "LOCAL" | "NETWORK" | "ANONYMOUS" | "NULL" | "N/A"
                )
        }
        Validator::EnvName => {
            let name = caps.and_then(|caps| caps.name("name"))?.as_str();
            let inner = value_span(hay, span.clone());
            let value = hay.get(inner.clone())?;
            let command = hay.get(span.start..)?.starts_with('`');
            let ok = is_secret_env_name(name)
                && !command
                && !harmless_value(value)
                && !same_word(name, value);
            return ok.then_some(inner);
        }
    };
    ok.then_some(span)
}

/// Domains and users of Windows' built-in accounts and registry roots, upper case:
/// `NT AUTHORITY\SYSTEM`, `BUILTIN\Administrators`, `IIS APPPOOL\DefaultAppPool`,
/// `HKLM\Software`.
const NOT_ACCOUNT_DOMAINS: &[&str] = &[
    "AUTHORITY",
    "BUILTIN",
    "SERVICE",
    "APPPOOL",
    "MANAGER",
    "HOST",
    "HKLM",
    "HKCU",
    "HKCR",
    "HKU",
    "HKCC",
    "NT",
    "NTFS",
    "SYSTEM",
    "SOFTWARE",
];
const NOT_ACCOUNT_USERS: &[&str] = &[
    "SYSTEM",
    "ADMINISTRATORS",
    "ADMINISTRATOR",
    "USERS",
    "GUESTS",
    "GUEST",
    "EVERYONE",
    "DEFAULTAPPPOOL",
    "TRUSTEDINSTALLER",
    "LOCALSERVICE",
    "NETWORKSERVICE",
    "DOMAIN USERS",
    "DOMAIN ADMINS",
];

fn domain_account(hay: &str, span: Range<usize>, text: &str) -> bool {
    let Some((domain, user)) = text.split_once('\\') else {
        return false;
    };
    let user = user.trim_start_matches('\\');
    // A longer path (`SOFTWARE\Microsoft\Windows`, `share\dir/x`) or a file (`docs\a.txt`).
    if matches!(after(hay, span.end), Some('\\' | '/'))
        || user.rsplit_once('.').is_some_and(|(_, ext)| {
            FILE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e))
                || matches!(
                    ext.to_ascii_lowercase().as_str(),
                    "log" | "csv" | "xml" | "ini" | "cfg" | "dat" | "db" | "bak" | "zip"
                )
        })
    {
        return false;
    }
    let domain_upper = domain.to_ascii_uppercase();
    let user_upper = user.to_ascii_uppercase();
    if domain_upper.starts_with("HKEY_")
        || NOT_ACCOUNT_DOMAINS.contains(&domain_upper.as_str())
        || NOT_ACCOUNT_USERS.contains(&user_upper.as_str())
    {
        return false;
    }
    // An escape sequence glued to words (`FAILED\nCaused by`, `waiting for IO\nretrying`,
    // `x\u002fy`), or a directory (`GCC\bin`): a user only after a word that names an
    // account and with a NetBIOS-style domain in upper case.
    let mut chars = user.chars();
    let first = chars.next();
    let second = chars.next();
    let upper_domain = domain
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
    let escape_or_dir = matches!(first, Some('n' | 'r' | 't' | 'b' | 'f' | 'v' | '0'))
        || matches!(
            user.to_ascii_lowercase().as_str(),
            "bin"
                | "lib"
                | "src"
                | "include"
                | "temp"
                | "tmp"
                | "system32"
                | "windows"
                | "etc"
                | "data"
                | "logs"
                | "config"
                | "users"
                | "public"
        );
    let word = account_word(hay, span.start);
    if escape_or_dir && !(upper_domain && strong_account_word(&word)) {
        return false;
    }
    if matches!(first, Some('n' | 'r' | 't')) && second.is_some_and(|c| c.is_ascii_uppercase())
        || first == Some('u')
            && user.len() >= 5
            && user
                .get(1..5)
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
        || first == Some('x')
            && user
                .get(1..3)
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return false;
    }
    // After a weak word (`saved as`, `waiting for`, `owned by`), only a NetBIOS-style domain
    // in upper case: `for CORP\jdoe`, not `saved as reports\q3`.
    let weak = matches!(word.as_str(), "as" | "for" | "by");
    !weak || upper_domain
}

/// The run of ASCII letters that ends `text` (`"logon for"` → `"for"`, `"a/"` → `""`).
fn last_word(text: &str) -> &str {
    let start = text
        .char_indices()
        .rev()
        .find(|(_, c)| !c.is_ascii_alphabetic())
        .map_or(0, |(i, c)| i + c.len_utf8());
    text.get(start..).unwrap_or("")
}

/// The word before an account at `at`, past quotes, brackets, `:` and `=`, in lower case.
fn account_word(hay: &str, at: usize) -> String {
    let before = hay
        .get(..at)
        .unwrap_or("")
        .trim_end_matches(['"', '\'', '(', '\\', ' ', '\t', ':', '=']);
    last_word(before).to_ascii_lowercase()
}

/// Whether an [account word](account_word) names an account for sure (`user`, `account`,
/// `logon`, ...), not a weak one (`as`, `for`, `by`).
fn strong_account_word(word: &str) -> bool {
    matches!(
        word,
        "user"
            | "username"
            | "account"
            | "logon"
            | "login"
            | "principal"
            | "owner"
            | "identity"
            | "domainuser"
    )
}

/// The user and host of a shell prompt, or an SSH key's comment, to redact.
fn user_at_host(caps: &Captures<'_>) -> Option<Range<usize>> {
    if let Some(comment) = caps.name("comment") {
        return (!harmless_value(comment.as_str())).then(|| comment.range());
    }
    let value = caps.name("value").or_else(|| caps.name("target"))?;
    let (user, host) = value.as_str().split_once('@')?;
    // `git@github.com:org/repo` is a remote; `root@` names no person, but its host does,
    // unless it is a container's id (`root@3f2a1b9c8d7e:/app#`).
    let container = host.len() >= 12 && host.bytes().all(|b| b.is_ascii_hexdigit());
    let service = NOT_PERSONS.iter().any(|n| user.eq_ignore_ascii_case(n));
    (!service && !container).then(|| value.range())
}

/// The user of an ARN, or the name of an LDAP DN unless it is a built-in container.
fn principal(caps: &Captures<'_>) -> Option<Range<usize>> {
    if let Some(user) = caps.name("value") {
        return Some(user.range());
    }
    let dn = caps.name("dn")?;
    let name = dn.as_str().trim();
    let builtin = [
        "users",
        "computers",
        "builtin",
        "system",
        "configuration",
        "schema",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n));
    (!builtin && !name.is_empty() && !harmless_value(name)).then(|| dn.range())
}

/// The values of a `Key (...)=(...)` detail: not when all are numbers or UUIDs (row ids).
fn key_detail(text: &str) -> bool {
    let id_like = |v: &str| {
        let v = v.trim();
        !v.is_empty()
            && (v
                .strip_prefix('-')
                .unwrap_or(v)
                .bytes()
                .all(|b| b.is_ascii_digit())
                || (v.len() == 36 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')))
    };
    !text.is_empty() && !text.split(',').all(id_like)
}

/// Names that are no person's in a URL or a log line: `git@`, `anonymous@`, Redis's
/// `default`, Erlang nodes (`rabbit@host`), and the words of `for invalid user x`.
const NOT_PERSONS: &[&str] = &[
    "git",
    "anonymous",
    "ftp",
    "guest",
    "invalid",
    "illegal",
    "unknown",
    "default",
    "nobody",
    "none",
    "null",
    "rabbit",
    "ejabberd",
    "couchdb",
    "emqx",
    "riak",
    "vernemq",
    "node",
];

/// The user of a log line, to redact.
fn log_user(hay: &str, caps: &Captures<'_>) -> Option<Range<usize>> {
    let value = caps.name("value")?;
    let name = value.as_str().trim_end_matches('.');
    if name.is_empty() || NOT_PERSONS.iter().any(|n| name.eq_ignore_ascii_case(n)) {
        return None;
    }
    // `Invalid user x from host` is sshd's; `invalid user input` is English.
    let whole = caps.get(0)?.as_str();
    if (whole.starts_with("Invalid user ") || whole.starts_with("Illegal user "))
        && !hay.get(value.end()..)?.starts_with(" from ")
    {
        return None;
    }
    Some(value.start()..value.start() + name.len())
}

/// What to redact of a URL's `user:password` or `user`.
fn url_credentials(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    match text.split_once(':') {
        // The password is already a placeholder: the user alone.
        Some((user, pass)) if pass.starts_with('<') => {
            (!user.is_empty()).then(|| span.start..span.start + user.len())
        }
        Some(_) => Some(span),
        None => {
            // A user alone only in the URLs people log in with (`https://jdoe@host`), not a
            // package's (`webpack://app@1.2.3`) or a database's service user
            // (`postgres://postgres@db`, `redis://default@cache`).
            let before = hay.get(..span.start)?;
            let before = before
                .strip_suffix("://")
                .or_else(|| before.strip_suffix(":\\/\\/"))
                .unwrap_or(before);
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
                .map_or(0, |i| i + 1);
            let scheme = before.get(start..).unwrap_or("").to_ascii_lowercase();
            let login = matches!(
                scheme.as_str(),
                "http"
                    | "https"
                    | "ssh"
                    | "sftp"
                    | "ftp"
                    | "ftps"
                    | "git+ssh"
                    | "svn+ssh"
                    | "smb"
                    | "rsync"
            );
            let version = hay
                .get(span.end + 1..)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            let person = !NOT_PERSONS.iter().any(|n| text.eq_ignore_ascii_case(n));
            (login && !version && person && !text.is_empty()).then_some(span)
        }
    }
}

/// A value after a secret's name in prose (`token 8f3a9b2c...`): random-looking, or all hex
/// with letters and digits; not a word, an identifier of words or a placeholder.
fn secret_word_value(text: &str) -> bool {
    let text = text.trim_end_matches(['.', ',', ';', ')', '\'', '"', '`']);
    if text.len() < 16 || harmless_value(text) {
        return false;
    }
    let hex = text.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let letters = text.bytes().filter(u8::is_ascii_alphabetic).count();
    (hex && digits >= 2 && letters >= 2) || very_random(text)
}

fn before(hay: &str, at: usize) -> Option<char> {
    hay.get(..at)?.chars().next_back()
}

fn after(hay: &str, at: usize) -> Option<char> {
    hay.get(at..)?.chars().next()
}

fn second_after(hay: &str, at: usize) -> Option<char> {
    hay.get(at..)?.chars().nth(1)
}

fn second_before(hay: &str, at: usize) -> Option<char> {
    hay.get(..at)?.chars().rev().nth(1)
}

fn is_digit(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_digit())
}

/// IPv4 addresses, except loopback and the unspecified/broadcast addresses, which identify
/// nobody and help debugging (`connection refused: 127.0.0.1:8080`).
fn ipv4(hay: &str, span: Range<usize>, text: &str) -> bool {
    // Part of a longer dotted number (a version like 10.0.19045.3803), or a version with a
    // suffix or prefix (`5.15.153.1-microsoft-standard-WSL2`, `libfoo-1.2.3.4`)?
    if (before(hay, span.start) == Some('.') && is_digit(second_before(hay, span.start)))
        || (after(hay, span.end) == Some('.') && is_digit(second_after(hay, span.end)))
        || matches!(after(hay, span.end), Some('-' | '+' | '_'))
        || matches!(before(hay, span.start), Some('-' | '_' | 'v' | 'V'))
        || after_version_word(hay, span.start)
        // A product's version (`Chrome/120.0.0.0`, `Electron/28.1.0.0` in user agents), a
        // library's (`libssl.so.1.1.1.1`) or a file's (`app-1.2.3.4.jar`).
        || product_version(hay, span.clone())
        || (before(hay, span.start) == Some('.')
            && second_before(hay, span.start).is_some_and(char::is_alphabetic))
        || (after(hay, span.end) == Some('.')
            && second_after(hay, span.end).is_some_and(char::is_alphabetic))
    {
        return false;
    }
    let mut octets = [0u16; 4];
    let mut n = 0;
    for part in text.split('.') {
        let Ok(value) = part.parse::<u16>() else {
            return false;
        };
        if value > 255 || n >= 4 {
            return false;
        }
        if let Some(slot) = octets.get_mut(n) {
            *slot = value;
        }
        n += 1;
    }
    // An address ending in `.0` names a network, not a host (and is how versions end:
    // `8.0.0.0`, `3.0.2.0`).
    let port = after(hay, span.end) == Some(':') && is_digit(second_after(hay, span.end));
    n == 4 && octets[0] != 127 && (octets[3] != 0 || port) && octets != [255, 255, 255, 255]
}

/// A version after a product's name, as user agents write them (`Chrome/120.0.0.0 Safari`,
/// `Electron/28.1.2.3)`): a capitalised name, then a space, `)`, `;`, `,` or the end. Not a
/// host after a path (`/ip4/203.0.113.7/tcp`, `db.internal/10.0.0.5:5432`).
fn product_version(hay: &str, span: Range<usize>) -> bool {
    if before(hay, span.start) != Some('/') {
        return false;
    }
    let name = last_word(hay.get(..span.start - 1).unwrap_or(""));
    let capitalised = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().skip(1).any(|c| c.is_ascii_lowercase());
    capitalised && matches!(after(hay, span.end), None | Some(' ' | ')' | ';' | ','))
}

/// Whether `hay[..at]` ends with `version`, `ver` or `v` as a word, then spaces or a colon:
/// `version 1.2.3.4` is no address.
fn after_version_word(hay: &str, at: usize) -> bool {
    let before = hay.get(..at).unwrap_or("");
    let trimmed = before.trim_end_matches([' ', '\t', ':', '=']);
    if trimmed.len() == before.len() {
        return false;
    }
    let lower_tail = |word: &str| {
        trimmed
            .get(trimmed.len().saturating_sub(word.len())..)
            .is_some_and(|t| t.eq_ignore_ascii_case(word))
            && trimmed
                .get(..trimmed.len() - word.len())
                .and_then(|s| s.chars().next_back())
                .is_none_or(|c| !c.is_alphanumeric())
    };
    ["version", "ver", "v"].iter().any(|w| lower_tail(w))
}

/// IPv6 addresses. The regex only finds runs of hex digits and colons; this decides, so that
/// Rust paths (`std::io::Error`, `a::b`) and times (`12:34:56`) stay.
fn ipv6(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
    if is_word(before(hay, span.start)) || before(hay, span.start) == Some('.') {
        return None;
    }
    if is_word(after(hay, span.end))
        || (after(hay, span.end) == Some('.') && is_digit(second_after(hay, span.end)))
    {
        return None;
    }
    let addr_part = text.split('%').next().unwrap_or(text);
    if !addr_part.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    // Two groups (`fe80::1`, `abc::def1`) are as likely a Rust path as an address, and say
    // little about anyone.
    let groups = addr_part.split(':').filter(|g| !g.is_empty()).count();
    if groups < 3 {
        return None;
    }
    let addr: Ipv6Addr = addr_part.parse().ok()?;
    if addr.is_loopback() || addr.is_unspecified() {
        return None;
    }
    Some(span)
}

fn mac(hay: &str, span: Range<usize>, text: &str) -> bool {
    // Cisco's `001a.2b3c.4d5e`: not part of a longer dotted number, and with a hex letter, so
    // that versions and dates (`2023.1101.0930`) stay.
    if text.contains('.') {
        let dot_then_hex = |dot: Option<char>, hex: Option<char>| {
            dot == Some('.') && hex.is_some_and(|c| c.is_ascii_hexdigit())
        };
        let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        return !dot_then_hex(after(hay, span.end), second_after(hay, span.end))
            && !dot_then_hex(before(hay, span.start), second_before(hay, span.start))
            && hex.bytes().any(|b| b.is_ascii_alphabetic())
            && hex.bytes().any(|b| b.is_ascii_digit())
            && !hex.bytes().all(|b| b == b'f' || b == b'F');
    }
    let mut seps = text.chars().filter(|c| *c == ':' || *c == '-');
    let first = seps.next();
    if !seps.all(|c| Some(c) == first) {
        return false;
    }
    // A seventh group means this is not a MAC address but something longer.
    let sep_then_hex = |sep: Option<char>, hex: Option<char>| {
        sep.is_some_and(|c| c == ':' || c == '-') && hex.is_some_and(|c| c.is_ascii_hexdigit())
    };
    if sep_then_hex(after(hay, span.end), second_after(hay, span.end))
        || sep_then_hex(before(hay, span.start), second_before(hay, span.start))
    {
        return false;
    }
    let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
    // `aa:bb:cc:dd:ee:ff` is an example, not an address.
    if !hex.bytes().any(|b| b.is_ascii_digit()) {
        return false;
    }
    !(hex.chars().all(|c| c == '0') || hex.chars().all(|c| c == 'f' || c == 'F'))
}

/// Payment card numbers: 13 to 19 digits from a card network's range that pass the Luhn
/// check. The range check keeps millisecond timestamps and other long numbers.
fn card(hay: &str, span: Range<usize>, text: &str) -> bool {
    if before(hay, span.start) == Some('-')
        || after(hay, span.end) == Some('-')
        || after_iban_head(hay, span.start)
    {
        return false;
    }
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let seps: Vec<char> = text.chars().filter(|c| !c.is_ascii_digit()).collect();
    if seps.windows(2).any(|w| w.first() != w.get(1)) {
        return false;
    }
    let prefix2 = digits
        .iter()
        .take(2)
        .fold(0u32, |acc, d| acc * 10 + u32::from(*d));
    let len = digits.len();
    // Each network's range and lengths: an IMEI (15 digits) is no Visa card.
    let network = match digits.first() {
        // UATP: 15 digits starting with 1.
        Some(1) => len == 15,
        Some(2) => (22..=27).contains(&prefix2) && len == 16,
        Some(3) => match prefix2 {
            34 | 37 => len == 15,
            30 | 36 | 38 | 39 => (14..=19).contains(&len),
            35 => (16..=19).contains(&len),
            _ => false,
        },
        Some(4) => matches!(len, 13 | 16 | 19),
        Some(5) => (50..=59).contains(&prefix2) && (12..=19).contains(&len),
        Some(6) => (16..=19).contains(&len),
        _ => false,
    };
    if !network || digits.iter().all(|d| Some(d) == digits.first()) {
        return false;
    }
    luhn(&digits)
}

/// Whether a number's digits are a card number (network range and Luhn).
pub(crate) fn is_card_number(digits: &str) -> bool {
    card(digits, 0..digits.len(), digits)
}

/// Whether `hay[..at]` ends with the start of an IBAN (`DE89 3704 `, `IS14 A159 `): then the
/// digits that follow are its account number, not a card.
fn after_iban_head(hay: &str, at: usize) -> bool {
    let before = hay.get(..at).unwrap_or("");
    let mut groups = before.trim_end_matches([' ', '-']).rsplit([' ', '-']);
    for _ in 0..8 {
        let Some(group) = groups.next() else {
            return false;
        };
        let b = group.as_bytes();
        if b.len() == 4
            && b.iter().take(2).all(u8::is_ascii_uppercase)
            && b.iter().skip(2).all(u8::is_ascii_digit)
        {
            return true;
        }
        if b.is_empty()
            || b.len() > 4
            || !b
                .iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return false;
        }
    }
    false
}

pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = u32::from(*d);
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("BI", 27),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DJ", 27),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MN", 20),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// IBANs: the country's length and the mod-97 checksum. The regex may run on into the next
/// upper-case word, so the span is cut to the country's length.
fn iban(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let country = text.get(..2)?;
    let len = IBAN_LENGTHS
        .iter()
        .find(|(code, _)| *code == country)
        .map(|(_, len)| *len)?;
    let mut compact = Vec::with_capacity(len);
    let mut end = span.start;
    for (i, b) in text.bytes().enumerate() {
        if compact.len() == len {
            break;
        }
        if b != b' ' && b != b'-' {
            compact.push(b);
            end = span.start + i + 1;
        }
    }
    if compact.len() != len || after(hay, end).is_some_and(char::is_alphanumeric) {
        return None;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for &b in tail.iter().chain(head) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if value >= 10 {
            (rem * 100 + value) % 97
        } else {
            (rem * 10 + value) % 97
        };
    }
    (rem == 1).then_some(span.start..end)
}

/// US social security numbers: valid area, group and serial numbers, one separator (`-`,
/// space or `.`) used twice, not part of a longer number with that separator.
fn ssn(hay: &str, span: Range<usize>, text: &str) -> bool {
    let seps: Vec<char> = text.chars().filter(|c| !c.is_ascii_digit()).collect();
    let Some(&sep) = seps.first() else {
        return false;
    };
    if seps.iter().any(|c| *c != sep)
        || (before(hay, span.start) == Some(sep) && is_digit(second_before(hay, span.start)))
        || (after(hay, span.end) == Some(sep) && is_digit(second_after(hay, span.end)))
        || matches!(before(hay, span.start), Some('.' | '-' | '+' | '/'))
        || matches!(after(hay, span.end), Some('.' | '-') if is_digit(second_after(hay, span.end)))
    {
        return false;
    }
    let mut parts = text.split(sep).map(|p| p.parse::<u32>().unwrap_or(0));
    let (area, group, serial) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// International phone numbers: `+`, then 8 to 15 digits, not glued to a preceding word
/// (`1.0.0+20240101123456` is semver build metadata).
fn phone(hay: &str, span: Range<usize>, text: &str) -> bool {
    if before(hay, span.start)
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '/' | '-'))
    {
        return false;
    }
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    (8..=15).contains(&digits)
}

/// Words that say a number nearby is a phone number.
const PHONE_WORDS: &[&str] = &[
    "phone",
    "tel",
    "mobile",
    "cell",
    "call",
    "fax",
    "whatsapp",
    "sms",
    "number",
    "\u{7535}\u{8bdd}",
    "\u{624b}\u{673a}",
    "\u{96fb}\u{8a71}",
    "rufnummer",
    "handy",
    "numéro",
    "telefone",
    "celular",
    "móvil",
    "portable",
];

/// Phone numbers in national formats: `(415) 555-0132`, `415-555-0132`, `090-1234-5678`,
/// `09-7625400`, each with 9 to 11 digits and not glued to a word or a longer number; and
/// Chinese mobile numbers (`13812345678`), only after a word saying it is a phone number.
fn phone_national(hay: &str, span: Range<usize>, text: &str) -> bool {
    if before(hay, span.start)
        .is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '+' | '/' | '-' | ':'))
        || after(hay, span.end).is_some_and(|c| c.is_alphanumeric() || c == '_')
        || (matches!(after(hay, span.end), Some('-' | '.' | '/' | ':'))
            && is_digit(second_after(hay, span.end)))
    {
        return false;
    }
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    if !(9..=11).contains(&digits) {
        return false;
    }
    let groups: Vec<usize> = text.split('-').map(str::len).collect();
    // `000-12-3456` is the shape of an SSN; trunk-prefixed numbers with two dashes have
    // 10 or 11 digits (`03-1234-5678`, `090-1234-5678`).
    if groups == [3, 2, 4] || (groups.len() == 3 && text.starts_with('0') && digits < 10) {
        return false;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) || (text.starts_with('0') && text.contains(' ')) {
        // A bare number, or digits in spaced groups (`020 7946 0958`, also the shape of
        // ordinary counts): only with a word before it saying what it is.
        let from = span.start.saturating_sub(32);
        let mut from = from;
        while !hay.is_char_boundary(from) {
            from += 1;
        }
        let window = hay.get(from..span.start).unwrap_or("").to_lowercase();
        // A word of its own: not `cell` in `RefCell`, `call` in `syscall`, `tel` in `Intel`.
        return PHONE_WORDS.iter().any(|w| {
            window.match_indices(w).any(|(i, _)| {
                !window
                    .get(..i)
                    .and_then(|s| s.chars().next_back())
                    .is_some_and(char::is_alphabetic)
            })
        });
    }
    true
}

/// IMEIs: the digits (after `IMEI` when not grouped) pass the Luhn check.
fn imei(hay: &str, caps: Option<&Captures<'_>>, span: Range<usize>) -> Option<Range<usize>> {
    let span = caps
        .and_then(|c| c.name("value"))
        .map_or(span, |m| m.range());
    let digits: Vec<u8> = hay
        .get(span.clone())?
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    (digits.len() == 15 && luhn(&digits) && digits.iter().any(|d| *d != 0)).then_some(span)
}

fn digits_of(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}

/// Whether `mm` and `dd` could be a month and a day.
fn valid_date(mm: u32, dd: u32) -> bool {
    (1..=12).contains(&mm) && (1..=31).contains(&dd)
}

fn num(digits: &[u8]) -> u64 {
    digits.iter().fold(0, |acc, d| acc * 10 + u64::from(*d))
}

/// National identity numbers: each kind's check digit, ranges or date.
/// Brazil's CPF (`123.456.789-09`): two mod-11 check digits, not eleven equal digits.
fn cpf(d: &[u8]) -> bool {
    if d.len() != 11 || d.iter().all(|x| Some(x) == d.first()) {
        return false;
    }
    let check = |n: usize| {
        let sum: u32 = d
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, x)| u32::from(*x) * (n as u32 + 1 - i as u32))
            .sum();
        (sum * 10 % 11 % 10) as u8
    };
    d.get(9) == Some(&check(9)) && d.get(10) == Some(&check(10))
}

fn national_id(hay: &str, caps: &Captures<'_>, span: Range<usize>, text: &str) -> bool {
    // Not part of a longer number or word-with-dashes.
    if matches!(before(hay, span.start), Some('-' | '.' | '/' | '+' | '_'))
        || matches!(after(hay, span.end), Some('-' | '/' | '_'))
        || (after(hay, span.end) == Some('.') && is_digit(second_after(hay, span.end)))
    {
        return false;
    }
    // Digits in groups: not one group of a longer grouped number (an IBAN's account
    // digits, a card).
    let grouped = text.starts_with(|c: char| c.is_ascii_digit()) && text.contains([' ', '-']);
    let glued = |c: Option<char>, c2: Option<char>| {
        matches!(c, Some(' ' | '-')) && c2.is_some_and(|c| c.is_ascii_digit())
    };
    if grouped
        && (after_iban_head(hay, span.start)
            || glued(before(hay, span.start), second_before(hay, span.start))
            || glued(after(hay, span.end), second_after(hay, span.end)))
    {
        return false;
    }
    let d = digits_of(text);
    let seps: Vec<char> = text.chars().filter(|c| matches!(c, ' ' | '-')).collect();
    let consistent = seps.windows(2).all(|w| w.first() == w.get(1));
    if caps.name("nino").is_some() {
        let prefix = text.get(..2).unwrap_or("");
        let spaces = text.matches(' ').count();
        return !matches!(prefix, "BG" | "GB" | "NK" | "KN" | "TN" | "NT" | "ZZ")
            && (spaces == 0 || spaces == 4);
    }
    if caps.name("cpf").is_some() {
        return cpf(&d);
    }
    if caps.name("itin").is_some() {
        let group = num(d.get(3..5).unwrap_or(&[]));
        return matches!(group, 50..=65 | 70..=88 | 90..=92 | 94..=99);
    }
    if caps.name("sin").is_some() {
        return consistent && luhn(&d);
    }
    if caps.name("aadhaar").is_some() {
        return consistent && verhoeff(&d);
    }
    if caps.name("pan").is_some() {
        return true;
    }
    if caps.name("hetu").is_some() {
        const CHECK: &[u8] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
        let Some(check) = text.bytes().last() else {
            return false;
        };
        let n = num(d.get(..9).unwrap_or(&[]));
        let (dd, mm) = (
            num(d.get(..2).unwrap_or(&[])),
            num(d.get(2..4).unwrap_or(&[])),
        );
        return d.len() >= 9
            && valid_date(mm as u32, dd as u32)
            && CHECK.get((n % 31) as usize) == Some(&check);
    }
    if caps.name("pnr").is_some() {
        let ten = d.get(d.len().saturating_sub(10)..).unwrap_or(&[]);
        let (mm, dd) = (
            num(ten.get(2..4).unwrap_or(&[])),
            num(ten.get(4..6).unwrap_or(&[])),
        );
        let dd = if dd > 60 { dd - 60 } else { dd };
        return ten.len() == 10 && valid_date(mm as u32, dd as u32) && luhn(ten);
    }
    if caps.name("rrn").is_some() {
        const W: [u64; 12] = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5];
        let sum: u64 = d.iter().zip(W).map(|(x, w)| u64::from(*x) * w).sum();
        let check = (11 - sum % 11) % 10;
        let (mm, dd) = (
            num(d.get(2..4).unwrap_or(&[])),
            num(d.get(4..6).unwrap_or(&[])),
        );
        return d.len() == 13
            && valid_date(mm as u32, dd as u32)
            && d.last().map(|x| u64::from(*x)) == Some(check);
    }
    if caps.name("nif").is_some() {
        const LETTERS: &[u8] = b"TRWAGMYFPDXBNJZSQVHLCKE";
        let compact: String = text.chars().filter(|c| *c != '-').collect();
        let Some(letter) = compact.bytes().last() else {
            return false;
        };
        let lead = match compact.bytes().next() {
            Some(b'X') => 0,
            Some(b'Y') => 1,
            Some(b'Z') => 2,
            _ => 0,
        };
        let n = if compact.starts_with(['X', 'Y', 'Z']) {
            lead * 10_000_000 + num(&d)
        } else {
            num(&d)
        };
        // Not a date-time (`20240115Z`).
        return (!text.ends_with('Z') || !text.starts_with("20"))
            && LETTERS.get((n % 23) as usize) == Some(&letter);
    }
    if caps.name("cf").is_some() {
        return italian_fiscal_code(text);
    }
    if caps.name("nhs").is_some() {
        let sum: u64 = d
            .iter()
            .take(9)
            .zip((2..=10u64).rev())
            .map(|(x, w)| u64::from(*x) * w)
            .sum();
        let check = 11 - sum % 11;
        let check = if check == 11 { 0 } else { check };
        return d.len() == 10 && check != 10 && d.last().map(|x| u64::from(*x)) == Some(check);
    }
    false
}

/// The Verhoeff check (Aadhaar numbers).
fn verhoeff(digits: &[u8]) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let mut c = 0u8;
    for (i, digit) in digits.iter().rev().enumerate() {
        let p = P
            .get(i % 8)
            .and_then(|row| row.get(usize::from(*digit)))
            .copied()
            .unwrap_or(0);
        c = D
            .get(usize::from(c))
            .and_then(|row| row.get(usize::from(p)))
            .copied()
            .unwrap_or(0);
    }
    c == 0
}

/// The check character of an Italian fiscal code.
fn italian_fiscal_code(text: &str) -> bool {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let bytes = text.as_bytes();
    if bytes.len() != 16 {
        return false;
    }
    let mut sum = 0u32;
    for (i, b) in bytes.iter().take(15).enumerate() {
        let v = if b.is_ascii_digit() {
            u32::from(b - b'0')
        } else {
            u32::from(b - b'A')
        };
        sum += if i % 2 == 0 {
            ODD.get(v as usize).copied().unwrap_or(0)
        } else {
            v
        };
    }
    bytes.get(15).copied() == Some(b'A' + (sum % 26) as u8)
}

/// Bitcoin addresses: base58check (`1...`, `3...`) or bech32 (`bc1...`) with a valid checksum.
fn crypto_address(text: &str) -> bool {
    if let Some(rest) = text.strip_prefix("bc1") {
        return bech32_ok("bc", rest);
    }
    base58check_ok(text)
}

fn base58check_ok(text: &str) -> bool {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    let mut bytes: Vec<u8> = Vec::with_capacity(32);
    for c in text.bytes() {
        let Some(mut carry) = ALPHABET.iter().position(|a| *a == c) else {
            return false;
        };
        for b in bytes.iter_mut().rev() {
            carry += usize::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = text.bytes().take_while(|b| *b == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(bytes);
    if full.len() != 25 {
        return false;
    }
    let (payload, check) = full.split_at(21);
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(Sha256::digest(payload));
    hash.get(..4) == Some(check)
}

fn bech32_ok(hrp: &str, data: &str) -> bool {
    const CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut values: Vec<u32> = hrp.bytes().map(|b| u32::from(b >> 5)).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| u32::from(b & 31)));
    for c in data.bytes() {
        let Some(v) = CHARSET.iter().position(|a| *a == c.to_ascii_lowercase()) else {
            return false;
        };
        values.push(v as u32);
    }
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x1ff_ffff) << 5) ^ v;
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    // bech32 (segwit v0) or bech32m (v1+).
    chk == 1 || chk == 0x2bc8_30a3
}

/// Names in `.local`/`.lan` that are services rather than machines.
const NOT_MACHINES: &[&str] = &[
    "cluster",
    "svc",
    "localhost",
    "example",
    "my",
    "your",
    "host",
];

/// A machine name by its shape: not part of a longer dotted name (`svc.cluster.local`),
/// a path (`/etc/x.local`) or a file name.
fn host_shape(hay: &str, span: Range<usize>, text: &str) -> bool {
    if matches!(
        before(hay, span.start),
        Some('.' | '/' | '\\' | '_' | '-' | '$')
    ) {
        return false;
    }
    let label = text.split('.').next().unwrap_or(text);
    // A file (`WS-2019.dll`), not a machine's domain.
    let last = text.rsplit('.').next().unwrap_or("");
    let file = text.contains('.')
        && (FILE_EXTENSIONS.iter().any(|e| last.eq_ignore_ascii_case(e))
            || [
                "log", "pdb", "dmp", "sys", "msi", "zip", "dylib", "a", "o", "d", "cfg", "ini",
            ]
            .iter()
            .any(|e| last.eq_ignore_ascii_case(e)));
    // Names of machine types, not machines: `IBM-PC compatible`, `VIRTUAL-PC`.
    let pc_type = label.len() > 3
        && label
            .get(label.len() - 3..)
            .is_some_and(|t| t.eq_ignore_ascii_case("-pc"))
        && label.get(..label.len() - 3).is_some_and(|kind| {
            [
                "IBM", "X86", "X64", "AT", "XT", "VIRTUAL", "SERVICE", "HOST", "CLIENT", "SERVER",
            ]
            .iter()
            .any(|k| kind.eq_ignore_ascii_case(k))
                || kind.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("com"))
        });
    !file && !pc_type && !NOT_MACHINES.iter().any(|n| label.eq_ignore_ascii_case(n))
}

/// File extensions that look like top-level domains in `icon@2x.png`.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "rs", "js", "ts", "json", "toml",
    "yaml", "yml", "txt", "md", "html", "css", "lock", "wasm", "so", "dll", "exe",
];

/// Where the mailbox starts in the local part of a percent-encoded text: after the last
/// encoded delimiter (`next=%2Fhome%3Femail%3Djane%40example.com` is `jane`), once or twice
/// encoded.
fn encoded_local_start(local: &str) -> usize {
    let bytes = local.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        // `%25XX` is `%XX` encoded once more.
        let at = if local.get(i + 1..i + 3) == Some("25") {
            i + 3
        } else {
            i + 1
        };
        let Some(hex) = local.get(at..at + 2) else {
            break;
        };
        match u8::from_str_radix(hex, 16) {
            Ok(b)
                if b < 0x80
                    && !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-')) =>
            {
                start = at + 2;
                i = at + 2;
            }
            _ => i += 1,
        }
    }
    start
}

fn email(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let (local, domain) = text.split_once('@').or_else(|| {
        let lower = text.to_ascii_lowercase();
        ["%2540", "%40", "&#64;", "&#x40;"]
            .iter()
            .find_map(|at_sign| {
                let at = lower.find(at_sign)?;
                Some((text.get(..at)?, text.get(at + at_sign.len()..)?))
            })
    })?;
    // `git@github.com:org/repo` is an SSH remote, not a mailbox.
    if local == "git" {
        return None;
    }
    // The user of a URL (`https://jdoe@bitbucket.org/x`) is not a mailbox: the URL's
    // credentials rule takes the user and leaves the host.
    if hay.get(..span.start).is_some_and(|b| b.ends_with("://")) {
        return None;
    }
    let tld = domain.rsplit('.').next().unwrap_or("");
    if FILE_EXTENSIONS
        .iter()
        .any(|ext| tld.eq_ignore_ascii_case(ext))
    {
        return None;
    }
    let start = encoded_local_start(local);
    (start < local.len()).then_some(span.start + start..span.end)
}

/// Whether a word looks like a credential rather than English: letters mixed with digits, or
/// upper case after the first character mixed with lower case.
pub(crate) fn token_like(text: &str) -> bool {
    if text.chars().count() < 8 {
        return false;
    }
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    let has_alpha = text.chars().any(char::is_alphabetic);
    let has_lower = text.chars().any(char::is_lowercase);
    let inner_upper = text.chars().skip(1).any(char::is_uppercase);
    (has_digit && has_alpha) || (has_lower && inner_upper)
}

/// The part of a matched value to redact: inside its quotes if it opens with one (`"a b"`,
/// `'a b'`, JSON-escaped `\"a b\"`; the closing quote, or the line break or end of text
/// that stands for a missing one, stays), else the value without closing brackets it does
/// not open (`{"token": 123}` keeps its `}`).
pub(crate) fn value_span(hay: &str, span: Range<usize>) -> Range<usize> {
    let Some(text) = hay.get(span.clone()) else {
        return span;
    };
    // Escaped more than once (`\\\"v\\\"` in JSON inside JSON inside a string): the
    // same run of backslashes and quote on both ends.
    let slashes = text.bytes().take_while(|b| *b == b'\\').count();
    if slashes >= 2
        && let Some(q) = text.get(slashes..).and_then(|r| r.chars().next())
        && matches!(q, '"' | '\'')
    {
        let open = text.get(..slashes + 1).unwrap_or("");
        let rest = text.get(open.len()..).unwrap_or("");
        let start = span.start + open.len();
        let inner = rest.strip_suffix(open).unwrap_or(rest);
        return start..start + inner.len();
    }
    for (open, close) in [
        ("\\\"", "\\\""),
        ("\\'", "\\'"),
        ("\"", "\""),
        ("'", "'"),
        ("`", "`"),
    ] {
        if let Some(rest) = text.strip_prefix(open) {
            let start = span.start + open.len();
            let inner = rest
                .strip_suffix(close)
                .or_else(|| rest.strip_suffix("\r\n"))
                .or_else(|| rest.strip_suffix(['\r', '\n']))
                .unwrap_or(rest);
            return start..start + inner.len();
        }
    }
    let mut end = text.len();
    while let Some(value) = text.get(..end) {
        let Some(last) = value.chars().next_back() else {
            break;
        };
        let open = match last {
            '}' => '{',
            ')' => '(',
            ']' => '[',
            _ => break,
        };
        let opens = value.chars().filter(|c| *c == open).count();
        let closes = value.chars().filter(|c| *c == last).count();
        if closes <= opens {
            break;
        }
        end -= last.len_utf8();
    }
    span.start..span.start + end
}

/// Words that follow `token:`, `session:`, `auth:` in prose rather than a credential:
/// `unexpected token: identifier`, `session: expired`.
const PROSE_VALUES: &[&str] = &[
    "identifier",
    "ident",
    "keyword",
    "literal",
    "string",
    "number",
    "integer",
    "float",
    "operator",
    "punctuation",
    "punct",
    "symbol",
    "expression",
    "eof",
    "end",
    "newline",
    "whitespace",
    "comma",
    "semicolon",
    "colon",
    "brace",
    "bracket",
    "parenthesis",
    "paren",
    "character",
    "char",
    "lifetime",
    "comment",
    "delimiter",
    "type",
    "expected",
    "found",
    "expired",
    "invalid",
    "missing",
    "revoked",
    "none",
    "null",
    "empty",
    "unknown",
    "required",
    "rejected",
    "denied",
    "failed",
    "valid",
    "malformed",
    "refreshed",
    "present",
    "absent",
    "disabled",
    "enabled",
    "true",
    "false",
    "ok",
    "error",
    "unauthorized",
    "forbidden",
    "not",
    "no",
    "yes",
];

/// Authorization schemes, which come before the credential (`Bearer abc`).
const AUTH_SCHEMES: &[&str] = &[
    "bearer",
    "basic",
    "token",
    "digest",
    "negotiate",
    "ntlm",
    "hoba",
    "mutual",
    "apikey",
    "aws4-hmac-sha256",
];

/// `name = value` and `name: value` in free text, and values in quotes (`"a b c"`) whole.
/// With `=`, after a quoted name (JSON, YAML) or after a name that leaves no doubt
/// (`password: hunter2`) any value goes; after `name:` in prose every value goes but a few
/// plain words (`unexpected token: identifier`, `session: expired`).
fn secret_assignment(hay: &str, caps: &Captures<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let name = caps.name("name")?;
    let name = name.as_str();
    // `"-u", "user:pass"` in an argument list.
    if matches!(name, "-u" | "--user") && caps.name("sep").is_some_and(|m| m.as_str().contains(','))
    {
        let inner = value_span(hay, span);
        let value = hay.get(inner.clone())?;
        let ok = value.contains(':') && !value.contains("://") && !harmless_value(value);
        return ok.then_some(inner);
    }
    let strong_name = keys::is_secret_key(name);
    if !strong_name && !keys::is_weak_secret_key(name) {
        return None;
    }
    // A public key's name (`PublicKeyToken=30ad4fe6b2a6aeed` of a .NET assembly).
    if keys::words(name).iter().any(|w| w == "public") {
        return None;
    }
    let (span, inner) = match wrapped_literal(hay, span.clone()) {
        Some(inside) => (inside.start - 1..inside.end + 1, inside),
        None => (span.clone(), value_span(hay, span)),
    };
    let value = hay.get(inner.clone())?;
    if harmless_value(value)
        || same_word(name, value)
        || (hay.get(span.start..)?.starts_with('`') && value.contains(' '))
    {
        return None;
    }
    let sep = caps.name("sep").map_or("=", |m| m.as_str());
    // `"password", "email"` is as likely a list of field names as a name and its value.
    if sep.contains(',') && is_plain_word(value) {
        return None;
    }
    if !strong_name {
        return looks_secret(value).then_some(inner);
    }
    let quoted_value = inner.start != span.start;
    // A quoted name before `:` is JSON or YAML, not prose.
    let quoted_name = caps.name("quote").is_some();
    // A space before the colon and a word after it is prose (MongoDB's `bad auth :
    // Authentication failed`), unless the name leaves no doubt (`password : hunter`).
    if sep.starts_with([' ', '\t'])
        && sep.trim() == ":"
        && !quoted_value
        && !quoted_name
        && !keys::is_strong_secret_key(name)
        && value.chars().all(char::is_alphabetic)
    {
        return None;
    }
    if sep.contains('=') || sep.contains(',') || quoted_name || keys::is_strong_secret_key(name) {
        return Some(inner);
    }
    // `http://auth:8080/`: a host and its port.
    let name_start = caps.name("name").map_or(span.start, |m| m.start());
    let before = hay.get(..name_start).unwrap_or("");
    if sep.trim() == ":" && (before.ends_with("//") || before.ends_with('@')) {
        return None;
    }
    // `Authorization: Bearer x`: the auth-header rule takes the credential after the scheme.
    if !quoted_value && AUTH_SCHEMES.iter().any(|s| value.eq_ignore_ascii_case(s)) {
        return None;
    }
    let prose = value.bytes().all(|b| b.is_ascii_lowercase()) && PROSE_VALUES.contains(&value);
    (!prose).then_some(inner)
}

/// A string literal behind a prefix or inside a wrapper, which the unquoted value of the
/// regex stops short of: Python's `b'...'`, `r"..."`, Rust's `Some("...")`,
/// `String::from("...")`, `Secret::new("...")`. Returns the span inside the quotes.
fn wrapped_literal(hay: &str, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let prefix = text.len() <= 2 && text.chars().all(|c| "bBrRuUfF".contains(c));
    let wrapper = text.ends_with('(')
        && text.len() <= 40
        && text
            .trim_end_matches('(')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !(prefix || wrapper) {
        return None;
    }
    let rest = hay.get(span.end..)?;
    let quote = rest.chars().next().filter(|c| matches!(c, '"' | '\''))?;
    let body = rest.get(1..)?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '\n' | '\r' => return None,
            c if c == quote && !escaped => {
                let start = span.end + 1;
                return (i > 0).then_some(start..start + i);
            }
            _ => escaped = false,
        }
        if i > 4096 {
            return None;
        }
    }
    None
}

/// Whether a value just repeats its name (`access_token=ACCESS_TOKEN`): a placeholder.
fn same_word(name: &str, value: &str) -> bool {
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (n, v) = (squeeze(name), squeeze(value));
    !v.is_empty() && (n == v || n.ends_with(&v) && v.len() >= 5)
}

/// A lower-case word or identifier (`email`, `user_name`).
fn is_plain_word(value: &str) -> bool {
    value.len() <= 24
        && value.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || matches!(c, '_' | '-' | '.'))
}

/// `<password>v</password>`: an element named like a secret; its text, trimmed.
fn secret_element(hay: &str, caps: &Captures<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let name = caps.name("name")?.as_str();
    let close = caps.name("close")?.as_str();
    if name != close {
        return None;
    }
    let text = hay.get(span.clone())?;
    let start = span.start + (text.len() - text.trim_start().len());
    let end = span.start + text.trim_end().len();
    if start >= end {
        return None;
    }
    let value = hay.get(start..end)?;
    if value.contains(['\n', '\r']) && !value.contains(['=', '+', '/']) && value.contains(' ') {
        return None;
    }
    let ok = if keys::is_secret_key(name) {
        !harmless_value(value) && !same_word(name, value)
    } else {
        keys::is_weak_secret_key(name) && looks_secret(value)
    };
    ok.then_some(start..end)
}

/// Words after a secret-looking flag that are prose, not its value (`--token is required`).
const FLAG_PROSE: &[&str] = &[
    "is", "are", "was", "to", "the", "a", "an", "and", "or", "of", "for", "flag", "option",
    "argument", "must", "should", "can", "cannot", "not", "with", "from", "in", "on", "at", "if",
    "when", "then", "instead", "only", "as", "be", "will", "may",
];

/// `--token v`, `--api-key "v"`, `-u user:pass`: the value of a secret-looking command-line
/// flag given as the next argument.
fn secret_flag(hay: &str, caps: &Captures<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let name = caps.name("name")?.as_str();
    let inner = value_span(hay, span.clone());
    let value = hay.get(inner.clone())?;
    let quoted = inner.start != span.start;
    if harmless_value(value) || value.starts_with('-') {
        return None;
    }
    if matches!(name, "u" | "user") {
        // curl's `-u user:password`, `-u "key:"`, `--user "{id}":"{secret}"`: the whole
        // argument, up to the next space.
        let rest = hay.get(span.start..)?;
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let arg = rest.get(..end)?;
        let ok = arg.contains(':')
            && !arg.contains("://")
            && arg.trim_matches(['"', '\'', ':']).len() >= 4;
        return ok.then_some(span.start..span.start + end);
    }
    let lower = value.to_ascii_lowercase();
    if !quoted && (FLAG_PROSE.contains(&lower.as_str()) || PROSE_VALUES.contains(&lower.as_str())) {
        return None;
    }
    let ok = if keys::is_secret_key(name) {
        quoted || value.chars().count() >= 4
    } else {
        keys::is_weak_secret_key(name) && looks_secret(value)
    };
    ok.then_some(inner)
}

/// A PEM private key block with a body: a placeholder (`anything`) between the markers is
/// no key. A block cut off before its end marker goes whatever follows.
fn pem_body(text: &str) -> bool {
    let Some(header_end) = text.get(5..).and_then(|t| t.find("-----")).map(|i| i + 10) else {
        return true;
    };
    let body = text.get(header_end..).unwrap_or("");
    let body = body.split("-----END").next().unwrap_or(body);
    if !text.contains("-----END") {
        return true;
    }
    let mut run = 0usize;
    let mut best = 0usize;
    for c in body.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=') {
            run += 1;
            best = best.max(run);
        } else if !matches!(c, '\n' | '\r' | ' ' | '\t' | '\\' | '"' | ',' | '\'') {
            run = 0;
        }
    }
    best >= 24
        || body
            .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
            .any(|w| w.len() >= 6 && w.bytes().any(|b| b.is_ascii_uppercase()))
}

/// Slack tokens: a type prefix, then numeric ids and a random part; short or all-letter
/// samples (`xoxb-your-token`, `xoxp-1234567890`) are examples.
fn slack_token(text: &str) -> bool {
    if !text.starts_with("xox") {
        return true;
    }
    let rest = text.get(5..).unwrap_or("");
    let longest_digits = rest
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    rest.len() >= 20 && (longest_digits >= 8 || token_like(rest)) && !harmless_value(text)
}

/// Names of values that are random by nature and help debugging: hashes, ids, checksums.
const RANDOM_NAME_WORDS: &[&str] = &[
    "sha",
    "sha1",
    "sha256",
    "sha512",
    "md5",
    "hash",
    "digest",
    "checksum",
    "crc",
    "commit",
    "rev",
    "revision",
    "id",
    "ids",
    "uuid",
    "guid",
    "etag",
    "nonce",
    "trace",
    "span",
    "event",
    "request",
    "build",
    "version",
    "integrity",
    "fingerprint",
    "salt",
    "iv",
    "seed",
    "oid",
    "ref",
    "tree",
    "parent",
    "blob",
    "object",
    "hmac",
    "signature",
    "sig",
    "path",
    "file",
    "url",
    "uri",
    "name",
    "type",
    "format",
    "pattern",
    "regex",
    "class",
    "module",
    "function",
    "symbol",
];

/// `name = value` where the name says nothing but the value is a random string: an API key
/// of a service without a known format. See [`very_random`].
fn random_assignment(hay: &str, caps: &Captures<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let name = caps.name("name")?.as_str();
    let inner = value_span(hay, span.clone());
    if !very_random(hay.get(inner.clone())?) {
        return None;
    }
    if keys::words(name)
        .iter()
        .any(|w| RANDOM_NAME_WORDS.contains(&w.trim_end_matches(|c: char| c.is_ascii_digit())))
    {
        return None;
    }
    // After `word:` in prose (`my address is: ...`, `failed: '...'`) nothing counts: the
    // name must look like an identifier (`API_KEY`, `acme_cfg`) or be quoted (`"acme":`).
    let sep = caps.name("sep").map_or("", |m| m.as_str());
    let identifier = name
        .chars()
        .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if sep.trim() == ":" && !identifier && caps.name("quote").is_none() {
        return None;
    }
    Some(inner)
}

/// Whether a value looks like a randomly generated secret rather than anything a program
/// prints for debugging: 20 to 512 characters of a token alphabet, letters and digits
/// mixed in a way no word or identifier is, high entropy. Guard rails keep hashes and ids
/// (hex in one case: git SHAs, addresses, build ids), UUIDs, paths, file and host names.
pub(crate) fn very_random(value: &str) -> bool {
    let n = value.len();
    if !(20..=512).contains(&n)
        || !value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-' | b'.' | b'~')
        })
        || value.starts_with(['/', '.', '-'])
        || value.starts_with("0x")
        || value.contains("//")
        || harmless_value(value)
    {
        return false;
    }
    let hex = value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let upper = value.bytes().any(|b| b.is_ascii_uppercase());
    let lower = value.bytes().any(|b| b.is_ascii_lowercase());
    if hex && !(upper && lower) {
        return false;
    }
    // A dotted name ending in a word (`com.example.app`, `libfoo.so`, `host.local`).
    if let Some((_, last)) = value.rsplit_once('.')
        && !last.is_empty()
        && last.len() <= 12
        && last.bytes().all(|b| b.is_ascii_lowercase())
    {
        return false;
    }
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let letters = value.bytes().filter(u8::is_ascii_alphabetic).count();
    if digits < 2 || letters < 4 {
        return false;
    }
    // Changes between upper case, lower case and digits: about 2 in 3 characters of a
    // random string, about 1 in 5 of an identifier (`MyLongClassName2`).
    let class = |b: u8| {
        if b.is_ascii_uppercase() {
            0
        } else if b.is_ascii_lowercase() {
            1
        } else if b.is_ascii_digit() {
            2
        } else {
            3
        }
    };
    let changes = value
        .as_bytes()
        .windows(2)
        .filter(|w| matches!(w, [a, b] if class(*a) != class(*b)))
        .count();
    if changes * 3 < n {
        return false;
    }
    let mut counts = [0u32; 128];
    for b in value.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b & 127)) {
            *c += 1;
        }
    }
    let len = n as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / len;
            -p * p.log2()
        })
        .sum();
    entropy >= 3.6 && (upper && lower || n >= 32)
}

/// A value in the `data:` of a Kubernetes `kind: Secret` manifest: base64 of the secret.
fn kubernetes_secret(hay: &str, span: Range<usize>, text: &str) -> bool {
    if !text.len().is_multiple_of(4)
        || text.len() < 12
        || !(text.ends_with('=') || token_like(text))
    {
        return false;
    }
    let mut from = span.start.saturating_sub(4096);
    while !hay.is_char_boundary(from) {
        from += 1;
    }
    let mut to = (span.end + 4096).min(hay.len());
    while !hay.is_char_boundary(to) {
        to -= 1;
    }
    let window = hay.get(from..to).unwrap_or("").to_ascii_lowercase();
    window.match_indices("kind:").any(|(i, _)| {
        window.get(i + 5..).is_some_and(|r| {
            r.trim_start_matches([' ', '\t', '\'', '"'])
                .starts_with("secret")
        })
    })
}

/// Values under secret names that are no secret: booleans, small numbers, empty and
/// placeholder values (`<YOUR_API_KEY>`, `xxxx`, `your-token-here`, `${TOKEN}`, `%s`,
/// `{{ secret }}`), references to where the secret lives (`var.db_password`,
/// `process.env.TOKEN`) and shell commands that fetch it (`` `vault read x` ``,
/// `$(pass show x)`).
pub(crate) fn harmless_value(value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > 4096 {
        return v.is_empty();
    }
    // An opening bracket alone: the start of a structure (`password: {"type": ...}`,
    // `token: [`), not a value.
    if matches!(v, "{" | "[" | "(" | "{{" | "[[") {
        return true;
    }
    // Markup (`<xsd:element ...`), a file path, or a word followed by a colon.
    if v.starts_with('<')
        || ((v.starts_with('/') || v.starts_with("./") || v.starts_with("~/"))
            && !v.contains(['@', '?']))
    {
        return true;
    }
    let v = v.strip_suffix(':').unwrap_or(v);
    // A constant's or variable's name (`K8S_CRED`, `DB_PASSWORD`): where the secret is.
    if v.len() <= 40
        && v.contains('_')
        && v.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && v.split('_')
            .all(|w| w.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return true;
    }
    let lower = v.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "true"
            | "false"
            | "yes"
            | "no"
            | "on"
            | "off"
            | "null"
            | "nil"
            | "none"
            | "undefined"
            | "n/a"
            | "na"
            | "empty"
            | "unset"
            | "required"
            | "optional"
            | "redacted"
            | "hidden"
            | "secret"
            | "password"
            | "token"
            | "changeme"
            | "placeholder"
            | "string"
            | "str"
            | "default"
            | "env"
            | "auto"
            | "disabled"
            | "enabled"
    ) {
        return true;
    }
    if v.len() <= 3 && v.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let mut chars = v.chars();
    if let Some(first) = chars.next()
        && v.chars().count() >= 3
        && chars.all(|c| c == first)
    {
        return true;
    }
    if lower.contains("xxxx") || lower.contains("****") || lower.contains("...") {
        return true;
    }
    let has_your = lower.contains("your") || lower.contains("insert") || lower.contains("enter");
    let has_here = lower.ends_with("here") || lower.contains("_here") || lower.contains("-here");
    if (has_your || has_here)
        && [
            "token", "key", "secret", "password", "pass", "here", "value", "api",
        ]
        .iter()
        .any(|w| lower.contains(w))
    {
        return true;
    }
    let ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    };
    let wrapped = |open: &str, close: &str| {
        v.strip_prefix(open)
            .and_then(|r| r.strip_suffix(close))
            .is_some_and(|inner| ident(inner.trim()) || inner.trim().is_empty())
    };
    if wrapped("<", ">")
        || wrapped("{", "}")
        || wrapped("{{", "}}")
        || wrapped("${", "}")
        || wrapped("${{", "}}")
        || wrapped("%(", ")s")
        || wrapped("[", "]")
        || wrapped("$", "")
        || wrapped("%", "%")
        || matches!(v, "%s" | "%d" | "%v" | "{}" | "?" | "$1" | ":1")
    {
        return true;
    }
    // Only shell or template variables: `$1:$2`, `${USER}:${PASS}`.
    if v.contains('$') && {
        let mut rest = v;
        let mut only_vars = true;
        while let Some(c) = rest.chars().next() {
            if c == '$' {
                let r = rest.get(1..).unwrap_or("");
                let r = r.strip_prefix('{').unwrap_or(r);
                let len = r
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(r.len());
                if len == 0 {
                    only_vars = false;
                    break;
                }
                let r = r.get(len..).unwrap_or("");
                rest = r.strip_prefix('}').unwrap_or(r);
            } else if c.is_ascii_punctuation() {
                rest = rest.get(1..).unwrap_or("");
            } else {
                only_vars = false;
                break;
            }
        }
        only_vars
    } {
        return true;
    }
    // A command that fetches the secret: `$(...)`, or a backquoted command line.
    if v.starts_with("$(") {
        return true;
    }
    // `var.db_password`, `process.env.API_TOKEN`, `settings.SECRET_KEY`: a name, not a value.
    if let Some((head, rest)) = v.split_once('.')
        && matches!(
            head,
            "var"
                | "vars"
                | "env"
                | "process"
                | "os"
                | "settings"
                | "config"
                | "conf"
                | "self"
                | "this"
                | "local"
                | "locals"
                | "secrets"
                | "params"
                | "args"
                | "context"
                | "ctx"
                | "inputs"
                | "values"
                | "data"
                | "module"
                | "app"
                | "cfg"
                | "options"
                | "opts"
                | "props"
                | "System"
                | "Environment"
        )
        && ident(rest)
    {
        return true;
    }
    if v.starts_with("os.environ") || v.starts_with("os.getenv(") || v.starts_with("getenv(") {
        return true;
    }
    false
}

/// Whether a value under a name that only may hold a secret (`SIGNING_KEY`, `sort_key`)
/// looks like one: 8 characters or more, not a placeholder, not a plain word or phrase, and
/// random-looking (letters with digits, mixed case inside, or many distinct characters).
pub(crate) fn looks_secret(value: &str) -> bool {
    let v = value.trim();
    let n = v.chars().count();
    if n < 12 || harmless_value(v) || v.contains(char::is_whitespace) {
        return false;
    }
    // A structured name (`user:42:profile`, `orders/2024/summary`, `app.cache.v2`): most
    // parts are plain words.
    let parts: Vec<&str> = v
        .split([':', '/', '.', '_', '-', '#', '|'])
        .filter(|p| !p.is_empty())
        .collect();
    let plain: usize = parts
        .iter()
        .filter(|p| {
            (p.len() >= 2 && p.bytes().all(|b| b.is_ascii_lowercase()))
                || (p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|p| p.len())
        .sum();
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if parts.len() >= 2 && plain * 3 >= total * 2 {
        return false;
    }
    if token_like(v) {
        return true;
    }
    let mut distinct: Vec<char> = v.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    let symbols = v
        .chars()
        .any(|c| !c.is_alphanumeric() && !matches!(c, '_' | '-' | '.'));
    (n >= 16 && distinct.len() >= 10) || (symbols && distinct.len() >= 6)
}

/// The credential of an `Authorization:` header (after its scheme, whatever it looks like),
/// the whole value of a `Cookie:` header, and the value after `Bearer` or `Basic` elsewhere
/// when it looks like a credential: letters and digits, 16 characters or more, or mixed case.
fn auth_credential(hay: &str, caps: &Captures<'_>, span: Range<usize>) -> Option<Range<usize>> {
    let text = hay.get(span.clone())?;
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '+' | '/' | '=' | '-');
    let Some(header) = caps.name("hdr") else {
        let len = text.find(|c: char| !is_token_char(c)).unwrap_or(text.len());
        let value = text.get(..len)?;
        let has_digit = value.bytes().any(|b| b.is_ascii_digit());
        let has_alpha = value.bytes().any(|b| b.is_ascii_alphabetic());
        let ok = (len >= 6 && has_digit && has_alpha) || len >= 16 || token_like(value);
        return ok.then_some(span.start..span.start + len);
    };
    let trimmed = text.trim_end();
    if header.as_str().to_ascii_lowercase().ends_with("cookie") {
        return (!trimmed.is_empty()).then_some(span.start..span.start + trimmed.len());
    }
    // A first word of letters followed by a space is the scheme; the credential follows it.
    let first = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .unwrap_or(text.len());
    let after = text.get(first..)?;
    let start = if first > 0 && after.starts_with([' ', '\t']) {
        // Nothing after the scheme in the match: the credential is already a placeholder.
        if after.trim().is_empty() {
            return None;
        }
        first + (after.len() - after.trim_start().len())
    } else {
        0
    };
    let rest = text.get(start..)?;
    let len = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '}' | ')' | ']'))
        .unwrap_or(rest.len());
    (len > 0).then_some(span.start + start..span.start + start + len)
}

/// Environment variable names whose values are secret by convention.
const SECRET_ENV_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PWD",
    "KEY",
    "AUTH",
    "CREDENTIAL",
    "SESSION",
    "COOKIE",
    "PRIVATE",
    "SIGNATURE",
    "DSN",
];

/// Names that contain a secret-looking part but hold harmless values the scrubber should not
/// chase through the event (`XDG_SESSION_TYPE=wayland`, `PWD=/home/alice/src`).
const HARMLESS_ENV_NAMES: &[&str] = &[
    "PWD",
    "OLDPWD",
    "DESKTOP_SESSION",
    "SESSION_MANAGER",
    "SSH_AUTH_SOCK",
    "GPG_AGENT_INFO",
    "XAUTHORITY",
    "KEYMAP",
    "TERM_SESSION_ID",
    "SENTRY_DSN",
    "KEYBOARD",
];

const HARMLESS_ENV_PREFIXES: &[&str] = &["XDG_SESSION_", "KDE_SESSION_", "GNOME_KEYRING_", "XKB_"];

/// Whether an environment variable's value is a secret, judged by its name.
pub(crate) fn is_secret_env_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    if HARMLESS_ENV_NAMES.contains(&upper.as_str())
        || HARMLESS_ENV_PREFIXES.iter().any(|p| upper.starts_with(p))
    {
        return false;
    }
    // `DATABASE_URL`-style values are judged by their content (credentials in the URL),
    // not by the name.
    SECRET_ENV_PARTS.iter().any(|part| upper.contains(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_word_stops_at_any_other_character() {
        assert_eq!(last_word("logon for"), "for");
        assert_eq!(last_word("a/"), "");
        assert_eq!(last_word("user"), "user");
        // A character of more than one byte right before the word.
        assert_eq!(last_word("Benutzer…user"), "user");
        assert_eq!(account_word("…User: \"", 9), "user");
    }

    #[test]
    fn luhn_known_numbers() {
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        assert!(luhn(&digits("4111111111111111")));
        assert!(luhn(&digits("79927398713")));
        assert!(!luhn(&digits("4111111111111112")));
    }

    #[test]
    fn env_names() {
        for name in [
            "GITHUB_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "DB_PASSWORD",
            "npm_config__auth",
        ] {
            assert!(is_secret_env_name(name), "{name}");
        }
        for name in [
            "RUST_LOG",
            "LANG",
            "XDG_SESSION_TYPE",
            "PWD",
            "HOME",
            "DATABASE_URL",
        ] {
            assert!(!is_secret_env_name(name), "{name}");
        }
    }
}
