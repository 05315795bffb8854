//! Removes what identifies a user (home paths, names, hostnames, secrets, personal data) from
//! crash-report events and text, on the user's machine, before anything is sent.
//!
//! ```
//! use consentry_scrubbers::Scrubber;
//! use serde_json::json;
//!
//! // Build once (the builtin rules compile once per process), then share: `Scrubber` is
//! // cheap to clone and `Send + Sync`.
//! let scrubber = Scrubber::builder()
//!     .user("alice")
//!     .hostname("alice-laptop.local")
//!     .home_dir("/home/alice")
//!     .env_var("GITHUB_TOKEN", "ghp_0123456789abcdefghijABCDEFGHIJ012345")
//!     .build()?;
//!
//! let mut event = json!({
//!     "server_name": "alice-laptop",
//!     "message": "sync failed for alice@example.com from 203.0.113.7",
//!     "exception": {"values": [{
//!         "type": "std::io::Error",
//!         "value": "No such file or directory: /home/bob/shared/notes.txt",
//!         "stacktrace": {"frames": [{
//!             "function": "serde::de::Deserialize::deserialize",
//!             "abs_path": "/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
//!             "lineno": 311,
//!         }]},
//!     }]},
//!     "extra": {"password": "hunter2", "url": "https://api.example.com/v1?api_key=abc123"},
//! });
//! let report = scrubber.scrub_value(&mut event)?;
//!
//! assert_eq!(event, json!({
//!     "server_name": "<hostname>",
//!     "message": "sync failed for <email> from <ip>",
//!     "exception": {"values": [{
//!         "type": "std::io::Error",
//!         "value": "No such file or directory: /home/<user>/shared/notes.txt",
//!         "stacktrace": {"frames": [{
//!             "function": "serde::de::Deserialize::deserialize",
//!             "abs_path": "~/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
//!             "lineno": 311,
//!         }]},
//!     }]},
//!     "extra": {"password": "<redacted>", "url": "https://api.example.com/v1?api_key=<redacted>"},
//! }));
//! assert_eq!(report.total(), 7);
//! println!("{report}"); // a per-rule summary: rule names, counts and field paths, no values
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The crate knows nothing of Sentry, consent, the network or files: the caller passes the
//! identities and environment in ([`ScrubberBuilder`]), and gets errors back ([`ScrubError`])
//! on which it must drop the event (fail closed). Scrubbing is idempotent, never panics, and
//! keeps the JSON's shape (types, array lengths, number of keys).
//!
//! # Builtin rules
//!
//! Rules run in this order; each sees the output of the ones before. Turn one off with
//! [`ScrubberBuilder::disable_rule`]; add your own with [`ScrubberBuilder::rule`] or
//! [`ScrubberBuilder::rule_pack`] ([`RuleConfig`], TOML or JSON [`RulePack`]s). The packs
//! live in the crate's `rules/` directory.
//!
//! | name | matches | placeholder |
//! |---|---|---|
//! | `pem-private-key` | PEM and PGP private key blocks, also cut off ones (not a placeholder body such as `anything`) | `<secret:private-key>` |
//! | `jwt` | JSON Web Tokens (`eyJ...`, also after `_`, `=` or an escaped `\n`), and JWTs wrapped in base64 (`ZXlK...`) | `<jwt>` |
//! | `github-token` | GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`) | `<secret:github>` |
//! | `gitlab-token` | GitLab tokens (`glpat-`, `gldt-`, `glrt-`, `glptt-`, `gloas-`, ... in their documented lengths, runner tokens `GR1348941...`) | `<secret:gitlab>` |
//! | `slack-token` | Slack tokens (`xoxb-`, `xoxp-`, `xapp-`, ... with their ids; not short examples) and webhook URLs (`services`, `workflows`, `triggers`) | `<secret:slack>` |
//! | `stripe-key` | Stripe secret and restricted keys (`sk_live_`, `rk_live_`, `rk_prod_`, test keys) | `<secret:stripe>` |
//! | `sk-api-key` | OpenAI/Anthropic-style keys (`sk-...`, `sk-proj-...`, `sk-ant-...`) | `<secret:api-key>` |
//! | `google-api-key` | Google API keys (`AIza...`) | `<secret:google>` |
//! | `aws-access-key` | AWS access key ids (`AKIA...`, `ASIA...`) | `<secret:aws>` |
//! | `aws-secret-key` | AWS secret access keys next to a name saying so | `<secret:aws>` |
//! | `vendor-token` | API tokens of other services by their documented prefix and shape (Notion `ntn_`, Sourcegraph `sgp_`, Vault `hvs.`, Sentry `sntrys_`, SendGrid `SG.`, PyPI `pypi-`, Hugging Face `hf_`, DigitalOcean `dop_v1_`, Mailgun `key-`, npm `npm_`, 1Password, Facebook `EAA`, and about forty more), anywhere in a word | `<secret:token>` |
//! | `vendor-token-shape` | Telegram bot tokens, Facebook app tokens, Mailchimp keys (`...-us12`), Azure AD client secrets (`...Q~...`), Discord and Teams webhooks | `<secret:token>` |
//! | `password-hash` | password hashes in crypt formats (bcrypt `$2b$`, Argon2, scrypt, PBKDF2, yescrypt, glibc `$1$`/`$5$`/`$6$`) | `<secret:password-hash>` |
//! | `redis-auth` | the password of a Redis `AUTH` command, when letters and digits mix | `<redacted>` |
//! | `secret-label-intl` | a value after the word for password in other languages (`Passwort:`, `senha=`, `пароль:`, `密码：`) | `<redacted>` |
//! | `twilio-key` | Twilio API key SIDs (`SK` and 32 hex digits) | `<secret:token>` |
//! | `discord-bot-token` | Discord bot tokens | `<secret:token>` |
//! | `secret-element` | the text of an XML element named like a secret (`<password>v</password>`) | `<redacted>` |
//! | `secret-attribute` | the value in `key="Password" value="v"` attribute pairs | `<redacted>` |
//! | `secret-pair` | a quoted secret name and its quoted value in calls and lists (`setProperty("api_token", "v")`, `["--password", "v"]`) | `<redacted>` |
//! | `secret-flag` | the value of a secret-looking command-line flag (`--token v`, `--api-key "v"`, curl's `-u user:pass`) | `<redacted>` |
//! | `sql-password` | passwords in SQL statements (`WITH PASSWORD 'v'`, `IDENTIFIED BY "v"`, doubled `''` inside), quotes included | `<redacted>` |
//! | `client-password-flag` | passwords given to command-line clients, in a shell line or an argument list, quoted or not: `mysql -pv` (glued), `sshpass -p v`, `docker login -p v`, `redis-cli -a v`, `ldapsearch -w v`, `zip -P v`, `keytool -storepass v`, `7z a -pv` | `<redacted>` |
//! | `oracle-credentials` | the password of Oracle connect strings (`jdbc:oracle:thin:scott/v@//db`, `sqlplus system/v@ORCL`) | `<redacted>` |
//! | `netrc-password` | the password of `.netrc` lines (`machine h login u password v`) | `<redacted>` |
//! | `auth-header` | the credential of `Authorization:` / `Proxy-Authorization:` headers (after the scheme, whatever it looks like), `Cookie:` / `Set-Cookie:` header values, and the value after `Bearer` / `Basic` elsewhere when it has letters and digits or 16 characters or more | `<redacted>` |
//! | `url-credentials` | `user:pass` in `scheme://user:pass@host`, also `scheme://:pass@host` and JSON-escaped `scheme:\/\/...` | `<redacted>` |
//! | `connection-string` | the password and user of ADO.NET/ODBC connection strings (`Server=db;User Id=jdoe;Password=a&b;`), up to the next `;` | `<redacted>` |
//! | `url-credentials-encoded` | user and password in a percent-encoded URL (`postgres%3A%2F%2Fapp%3As3cret%40db`) | `<redacted>` |
//! | `secret-query-param` | values of secret-looking query parameters (`?token=`, `&api_key=`, `&password=`, `&pwd=`, `&jwt=`, `&sig=`) | `<redacted>` |
//! | `multipart-field` | the value of a secret-looking field in a `multipart/form-data` body | `<redacted>` |
//! | `secret-key-value` | the value in `name=value` / `name: value` text and in the assignments of programming languages and build files (`:=`, `::=`, `?=`, `.=`, `=>`, `==`, typed `var name string = "v"`, backquoted values, after `%3D`) when the name is a secret's, a quoted value up to its closing quote; names ending in `key`, `token` or `secret` only when the value looks random; harmless values stay (booleans, numbers up to 3 digits, placeholders like `<YOUR_API_KEY>` or `xxxx`, references like `var.db_password` or `${TOKEN}`); after `name:` in prose a few plain words stay (`unexpected token: identifier`) | `<redacted>` |
//! | `secret-word-value` | a random-looking or hex value right after a secret's name in prose, without `=` or `:` (`auth with token 8f3a...`, `the API key is AKx9...`) | `<redacted>` |
//! | `random-value` | a value that looks randomly generated (20 characters or more, letters and digits mixed as no word or identifier is, high entropy) assigned to any name but a hash's or an id's (`sha`, `commit`, `id`, `uuid`, `etag`, ...); hex in one case (git SHAs, addresses), UUIDs, paths and dotted names stay | `<redacted>` |
//! | `kubernetes-secret` | the base64 values in the `data:` of a Kubernetes `kind: Secret` manifest | `<redacted>` |
//! | `env-secret` | values of the given environment whose name looks secret (`*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*KEY*`, `*AUTH*`, `*SESSION*`, `*COOKIE*`, ...) or that hold URL credentials, anywhere; plain words only under `*PASSWORD*`, `*PASSWD*`, `*SECRET*`, `*TOKEN*` names, as whole words | `<redacted>` |
//! | `env-assignment` | the value in `NAME=value` environment dumps when the name looks secret (a quoted value whole) | `<redacted>` |
//! | `email` | email addresses, internationalised ones too (`müller@bücher.de`), with `@` as is, percent-encoded once or twice or as an HTML entity (not `git@host` remotes, not `icon@2x.png`) | `<email>` |
//! | `ipv4` | IPv4 addresses except loopback, `0.0.0.0`, `255.255.255.255` and versions (`v1.2.3.4`, `version 1.2.3.4`) | `<ip>` |
//! | `mac-address` | MAC addresses | `<mac>` |
//! | `ipv6` | IPv6 addresses except `::1` and `::` (Rust paths stay) | `<ip>` |
//! | `credit-card` | card numbers in a card network's range (and 15-digit UATP), Luhn-checked; not the account digits of an IBAN | `<card>` |
//! | `iban` | IBANs, length and mod-97 checked, also grouped with spaces or dashes | `<iban>` |
//! | `us-ssn` | US social security numbers in valid ranges (`123-45-6789`, also with spaces or dots) | `<ssn>` |
//! | `phone` | phone numbers in international format (`+44 20 7946 0958`) | `<phone>` |
//! | `phone-national` | phone numbers in national formats (`(415) 555-0132`, `415-555-0132`, `090-1234-5678`, `09-7625400`), and, after a word like `phone`, `tel` or `sms`, Chinese mobile numbers (`13812345678`), trunk-prefixed numbers in spaced groups (`020 7946 0958`) and bare 10- or 11-digit numbers (`07911123456`) | `<phone>` |
//! | `crypto-address` | Bitcoin addresses (`1...`, `3...`, `bc1...`, checksums checked) | `<crypto>` |
//! | `imei` | device IMEIs (15 digits, Luhn-checked), grouped `35-209900-176148-1` or after the word `IMEI` | `<imei>` |
//! | `national-id` | national identity and tax numbers, check digits or ranges checked: UK National Insurance and NHS numbers, US ITINs, Canadian SINs, Indian Aadhaar and PAN, Finnish, Swedish and Korean personal numbers, Spanish NIF/NIE, Italian fiscal codes, Brazilian CPFs | `<national-id>` |
//! | `windows-sid` | Windows security identifiers of accounts (`S-1-5-21-...`, `S-1-12-1-...`); well-known SIDs stay | `<sid>` |
//! | `domain-account` | Windows accounts written `DOMAIN\\user` after a word naming an account (`logon failure for CORP\\jdoe`); registry keys, longer paths and built-in accounts stay | `<user>` |
//! | `user-at-host` | a shell prompt's `user@host` (`jdoe@laptop:~/src$`) and an SSH public key's comment; `git@` remotes stay | `<user>@<hostname>` |
//! | `user-at-address` | the user before an IP address (`jdoe@10.0.4.17`); `git@` stays | `<user>` |
//! | `user-in-log` | the user in sshd, PAM and login lines, unquoted (`Failed password for jdoe from`, `session opened for user jdoe`, `logged in as jdoe`, `user=jdoe`) | `<user>` |
//! | `cloud-principal` | the user of AWS IAM and STS ARNs, the name of LDAP DNs (`CN=John Smith,OU=...`, `uid=jdoe,ou=...`) | `<user>` |
//! | `sql-key-detail` | the values of PostgreSQL's `Key (col)=(value)` constraint details, unless all are numbers or UUIDs | `<redacted>` |
//! | `windows-event-account` | the account and machine names of Windows security events (`Account Name: jdoe`, `Workstation Name: FIN-WS-0231`) | `<user>` |
//! | `personal-pair` | the quoted value of a quoted name of personal data in a text (a Python dict's repr, JSON inside a string: `'full_name': 'Jane Doe'`) | `<redacted>` |
//! | `id-output` | the user and group names of `id` output (`uid=1000(jdoe) gid=1000(jdoe) groups=...`); system accounts and groups stay | `<user>` |
//! | `home-path` | home directories: `/home/u`, `/homes/u`, `/Users/u`, `C:\Users\u` (any separator, JSON-escaped as `\/` or `\u002f`, `\\?\`, any drive; names with spaces or apostrophes), user folders on shares (`\\host\Users\u`, `\\host\c$\Users\u`, `\\host\home\u`, `//host/Users/u`), WSL `/mnt/c/Users/u` and `\\wsl$\distro\home\u`, AFS `/afs/cell/user/j/u`, the shell's `~u/`, `file://` and percent-encoded forms (any `%XX` in the name) | the running user's home becomes `~`; in others the user becomes `<user>` |
//! | `user-name` | user names, given or learned from the event's home paths (`/home/u` and `/Users/u` only when a path follows; `u` also from `u.DOMAIN` profile folders) and `USER=` pairs, as whole words in any case, not in Rust paths (`a::u`); learned ones also not next to `_` nor as a file's name (`u.rs`) | `<user>` |
//! | `full-name` | the user's full name, also as `alice.smith`, `alice_smith`, ... | `<user>` |
//! | `hostname` | hostnames and their short form, given or learned from `server_name`, `contexts.device.name`, `HOSTNAME=` / `COMPUTERNAME=` and UNC paths `\\host\share`; `server_name` and `contexts.device.name` are replaced whole, however short the name | `<hostname>` |
//! | `hostname-shape` | machine names by their shape anywhere, with their domain too: Windows defaults (`DESKTOP-1A2B3C4`, `LAPTOP-...`, `WIN-...`, `WS-...`, `JDOE-PC`), personal machines (`alices-MBP`, `Alices-MacBook-Pro.local`, `bob-thinkpad`, `bob-XPS-13`, `bob-laptop`), Ubuntu's user-and-product defaults (`jdoe-ThinkPad-T480`, `jdoe-VirtualBox`), single-label `.local`, `.lan`, `.localdomain`, `.home.arpa` names (not `svc.cluster.local`) | `<hostname>` |
//! | `user-position` | a quoted name where a user name stands (`for user "bob"`, `as user 'bob'`, `login 'bob'`, `owner: "bob"`), whoever it is | `<user>` |
//! | `deny-key` | the whole value under a secret-looking map key (`password`, `pass`, `pwd`, `secret`, `token`, `jwt`, `bearer`, `api_key`, `authorization`, `cookie`, `session`, `csrf`, `private_key`, `credentials`, `username`, ...; `passwort`, `mot_de_passe`, `contraseña`, `пароль` and other languages' words for password; and keys naming personal data: `first_name`, `ssn`, `date_of_birth`, `card_number`, `iban`, `passport_number`, ...; compared by words, so `X-Api-Key` and `apiKey` match) | `<redacted>` (numbers become `0`) |
//!
//! Short or common names (`root`, `admin`, `user`, `test`, `vm`, `dev`, names under 3
//! characters) are not chased through free text, where they are ordinary words (`root
//! cause`, `dev build`). They are replaced where they stand in an identity position: after
//! `user`, `login`, `as`, `for`, `by`, `owner` (users) or `host`, `hostname`, `on`,
//! `machine`, `node`, `server`, `at` (hosts), with `=`, `:` or quotes between, as the user
//! of `user@host` and the host after `@`, after `~`, and in home paths. `server_name` and
//! `contexts.device.name` are replaced whole.
//!
//! What stays: error types, messages around the removed parts, crate names and versions,
//! file names, relative paths, line and column numbers, function and module names, OS and
//! Rust versions, HTTP status codes, UUIDs and git commit hashes.
//!
//! # How it works
//!
//! The builtin packs are parsed and compiled once per process; [`ScrubberBuilder::build`]
//! adds the identities, environment secrets and app rules, and a prefilter that lets each
//! string skip every rule that cannot match it (one byte scan, one Aho-Corasick scan). A
//! scrub first learns identities from the event (home paths, `server_name`,
//! `contexts.device.name`, `HOSTNAME=` pairs, UNC paths), then walks it without recursion,
//! running the rules in order over every string and key until the string no longer changes,
//! and remembering results for strings that repeat. Identities that only scrubbing uncovers
//! are chased in another walk. Placeholders already written are never matched again, which
//! keeps scrubbing idempotent.
//!
//! # Cargo features
//!
//! None: the crate has no optional parts.
#![deny(missing_docs)]

mod builtin;
mod compile;
mod config;
mod engine;
mod env;
mod error;
mod hash;
mod identity;
mod inner;
mod keys;
mod matches;
mod paths;
mod report;
mod validate;
mod walk;

pub use builtin::builtin_rules;
pub use config::{Redaction, RuleConfig, RuleKind, RulePack};
pub use engine::{MAX_STRING_BYTES, Scrubber, ScrubberBuilder};
pub use error::{BuildError, ScrubError};
pub use hash::hash_with_salt;
pub use report::{Report, ReportEntry};

/// The placeholder of rules that say nothing more specific.
pub(crate) const REDACTED: &str = "<redacted>";
