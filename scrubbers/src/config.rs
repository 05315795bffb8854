//! Rule configuration: what rule packs (TOML or JSON) and [`RuleConfig`] constructors produce.
//!
//! A rule is flat on purpose: `kind` says which of the other fields matter, so that a typo in
//! a pack is an error naming the rule rather than a silently ignored field.

use serde::{Deserialize, Serialize};

use crate::error::BuildError;

/// How a rule rewrites what it matched.
///
/// In a rule pack: `redaction = { placeholder = "<email>" }`, `redaction = "mask"`,
/// `redaction = "remove"` or `redaction = "hash"`.
///
/// ```
/// use consentry_scrubbers::{Redaction, RuleConfig, Scrubber};
///
/// let scrubber = Scrubber::builder()
///     .salt(b"per-install salt")
///     .rule(RuleConfig::literal("project", ["Nightingale"]).with_redaction(Redaction::Hash))
///     .build()?;
/// let (text, _) = scrubber.scrub_text("project Nightingale failed")?;
/// assert_eq!(text, format!("project {} failed", scrubber.hash("Nightingale")));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Redaction {
    /// Replace the match with this text, e.g. `<email>`.
    Placeholder(String),
    /// Replace every character of the match with `*`.
    Mask,
    /// Delete the match.
    Remove,
    /// Replace the match with its salted hash, `<hash:` + 16 hex digits + `>` (see
    /// [`hash_with_salt`](crate::hash_with_salt)): equal values still group together.
    Hash,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction::Placeholder(crate::REDACTED.to_owned())
    }
}

/// What a rule matches on.
///
/// ```
/// use consentry_scrubbers::{RuleConfig, RuleKind};
///
/// assert_eq!(RuleConfig::key("internal-id", ["internal_id"]).kind(), RuleKind::Key);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    /// A regular expression (`pattern`), optionally redacting one capture `group` only.
    Regex,
    /// A list of literal strings (`values`), by default whole-word and ASCII case-insensitive.
    Literal,
    /// Map keys (`keys`): the value under a matching key is redacted whatever it holds.
    Key,
    /// One of the engine's built-in detectors (home paths, identities, environment values).
    Detector,
}

/// The built-in detectors a `kind = "detector"` rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Detector {
    HomePath,
    UserName,
    FullName,
    Hostname,
    EnvSecret,
}

/// Checks a regex match must pass before it is redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Validator {
    Ipv4,
    Ipv6,
    Mac,
    Card,
    Iban,
    Ssn,
    Phone,
    PhoneNational,
    CryptoAddress,
    Imei,
    NationalId,
    Email,
    HostShape,
    TokenLike,
    AuthCredential,
    SecretParam,
    SecretAssignment,
    SecretElement,
    SecretFlag,
    RandomAssignment,
    KubernetesSecret,
    PemBody,
    SlackToken,
    EnvName,
    /// The match, without its quotes, is not a placeholder or a harmless word (`'***'`,
    /// `'<password>'`).
    NotPlaceholder,
    /// `DOMAIN\user` after a word naming an account: not a registry key, a longer path, a
    /// built-in account or an escape sequence.
    DomainAccount,
    /// A shell prompt's `user@host` or an SSH public key's comment (the `value` or
    /// `comment` group): not a `git@` remote.
    UserAtHost,
    /// A value after a secret's name in prose: random-looking or all hex, not a word.
    SecretWordValue,
    /// The user (and password) of a URL: the user alone where the password is already a
    /// placeholder; not `git@` or `anonymous@`.
    UrlCredentials,
    /// The user of an AWS ARN (`value`) or the name of an LDAP DN (`dn`).
    Principal,
    /// The values of a `Key (...)=(...)` detail, unless all are numbers or UUIDs.
    KeyDetail,
    /// An account or machine name alone: not a built-in account (`SYSTEM`, `LOCAL SERVICE`).
    DomainAccountName,
    /// A quoted pair whose name is personal data's (`'full_name': 'Jane Doe'`).
    PersonalPair,
    /// A connection string's value whose name is a password's or a user's.
    ConnectionString,
    /// The user of a log line (`value`): a person's name, not a service's (`default`,
    /// `rabbit`); after `Invalid user`, only when sshd's ` from` follows.
    LogUser,
    /// A Redis password: letters and digits mixed, not an SMTP mechanism (`SCRAM-SHA-256`).
    RedisPassword,
    /// A user or group name of `id` output: not a system account or group (`root`, `sudo`).
    IdName,
}

/// One scrubbing rule: a name, what it matches, and how it redacts.
///
/// Build one with [`RuleConfig::regex`], [`RuleConfig::literal`] or [`RuleConfig::key`], or
/// load many from a [`RulePack`]. Rules run in order, builtin rules first; each sees the
/// output of the ones before it.
///
/// ```
/// use consentry_scrubbers::{Redaction, RuleConfig, Scrubber};
///
/// let scrubber = Scrubber::builder()
///     .rule(
///         RuleConfig::regex("ticket", r"\bTCK-[0-9]{6}\b")
///             .with_redaction(Redaction::Placeholder("<ticket>".into())),
///     )
///     .build()?;
/// let (text, report) = scrubber.scrub_text("see TCK-123456")?;
/// assert_eq!(text, "see <ticket>");
/// assert_eq!(report.count_for_rule("ticket"), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub(crate) name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) description: String,
    pub(crate) kind: RuleKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) validate: Option<Validator>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) size_limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) detector: Option<Detector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) case_insensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) whole_word: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) triggers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) requires: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) min_digits: usize,
    #[serde(default)]
    pub(crate) redaction: Redaction,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl RuleConfig {
    fn new(name: impl Into<String>, kind: RuleKind) -> Self {
        RuleConfig {
            name: name.into(),
            description: String::new(),
            kind,
            pattern: None,
            group: None,
            validate: None,
            size_limit: None,
            values: Vec::new(),
            keys: Vec::new(),
            detector: None,
            case_insensitive: None,
            whole_word: None,
            triggers: Vec::new(),
            requires: Vec::new(),
            min_digits: 0,
            redaction: Redaction::default(),
        }
    }

    /// A rule redacting every match of a regular expression (Rust `regex` syntax).
    ///
    /// The compiled pattern may use at most 1 MiB unless [`with_size_limit`] says otherwise.
    ///
    /// [`with_size_limit`]: RuleConfig::with_size_limit
    ///
    /// ```
    /// use consentry_scrubbers::RuleConfig;
    ///
    /// let rule = RuleConfig::regex("order-id", r"\bORD-[0-9]{8}\b");
    /// assert_eq!(rule.name(), "order-id");
    /// ```
    pub fn regex(name: impl Into<String>, pattern: impl Into<String>) -> Self {
        let mut rule = RuleConfig::new(name, RuleKind::Regex);
        rule.pattern = Some(pattern.into());
        rule
    }

    /// A rule redacting literal strings, as whole words and ignoring ASCII case (change that
    /// with [`case_sensitive`](RuleConfig::case_sensitive) and
    /// [`substring`](RuleConfig::substring)).
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let scrubber = Scrubber::builder()
    ///     .rule(RuleConfig::literal("customer", ["Acme Corp"]))
    ///     .build()?;
    /// assert_eq!(scrubber.scrub_text("acme corp crashed")?.0, "<redacted> crashed");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn literal<I, S>(name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut rule = RuleConfig::new(name, RuleKind::Literal);
        rule.values = values.into_iter().map(Into::into).collect();
        rule
    }

    /// A rule redacting the value under matching map keys, whatever it holds.
    ///
    /// Keys are compared by words, ignoring case and separators: `api_key` matches `apiKey`,
    /// `X-Api-Key` and `api-keys`, but not `monkey`.
    ///
    /// ```
    /// use consentry_scrubbers::{Redaction, RuleConfig, Scrubber};
    /// use serde_json::json;
    ///
    /// let scrubber = Scrubber::builder()
    ///     .rule(RuleConfig::key("license", ["license_key"]).with_redaction(Redaction::Mask))
    ///     .build()?;
    /// let mut event = json!({"extra": {"licenseKey": "AB12"}});
    /// scrubber.scrub_value(&mut event)?;
    /// assert_eq!(event, json!({"extra": {"licenseKey": "****"}}));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn key<I, S>(name: impl Into<String>, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut rule = RuleConfig::new(name, RuleKind::Key);
        rule.keys = keys.into_iter().map(Into::into).collect();
        rule
    }

    /// Sets how matches are redacted (default: the placeholder `<redacted>`).
    ///
    /// ```
    /// use consentry_scrubbers::{Redaction, RuleConfig};
    ///
    /// let rule = RuleConfig::literal("x", ["y"]).with_redaction(Redaction::Mask);
    /// assert_eq!(rule.redaction(), &Redaction::Mask);
    /// ```
    #[must_use]
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = redaction;
        self
    }

    /// Sets a one-line description, shown in rule listings.
    ///
    /// ```
    /// use consentry_scrubbers::RuleConfig;
    ///
    /// let rule = RuleConfig::literal("x", ["y"]).with_description("internal code names");
    /// assert_eq!(rule.description(), "internal code names");
    /// ```
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Regex rules: redact only this capture group (a name or a number) instead of the whole
    /// match.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let scrubber = Scrubber::builder()
    ///     .rule(RuleConfig::regex("pin", r"PIN (?P<pin>[0-9]{4})").with_group("pin"))
    ///     .build()?;
    /// assert_eq!(scrubber.scrub_text("PIN 1234")?.0, "PIN <redacted>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Regex rules: the most memory the compiled pattern may use, in bytes (default 1 MiB,
    /// at most 16 MiB). A pattern over the limit is a [`BuildError`].
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let rule = RuleConfig::regex("huge", r"\w{1000}").with_size_limit(10_000);
    /// assert!(Scrubber::builder().rule(rule).build().is_err());
    /// ```
    #[must_use]
    pub fn with_size_limit(mut self, bytes: usize) -> Self {
        self.size_limit = Some(bytes);
        self
    }

    /// Only run this rule on strings containing one of these literals (ASCII
    /// case-insensitive). A cheap prefilter for regex rules; it never changes what matches
    /// as long as every match contains one of the literals.
    ///
    /// ```
    /// use consentry_scrubbers::RuleConfig;
    ///
    /// let rule = RuleConfig::regex("order-id", r"\bORD-[0-9]{8}\b").with_triggers(["ord-"]);
    /// # let _ = rule;
    /// ```
    #[must_use]
    pub fn with_triggers<I, S>(mut self, triggers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.triggers = triggers.into_iter().map(Into::into).collect();
        self
    }

    /// Regex and literal rules: match case exactly.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let scrubber = Scrubber::builder()
    ///     .rule(RuleConfig::literal("code", ["ZETA"]).case_sensitive())
    ///     .build()?;
    /// assert_eq!(scrubber.scrub_text("zeta ZETA")?.0, "zeta <redacted>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn case_sensitive(mut self) -> Self {
        self.case_insensitive = Some(false);
        self
    }

    /// Literal rules: match anywhere, also inside longer words.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let scrubber = Scrubber::builder()
    ///     .rule(RuleConfig::literal("code", ["zeta"]).substring())
    ///     .build()?;
    /// assert_eq!(scrubber.scrub_text("zetabase")?.0, "<redacted>base");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn substring(mut self) -> Self {
        self.whole_word = Some(false);
        self
    }

    /// The rule's name, as reported and as [`disable_rule`](crate::ScrubberBuilder::disable_rule)
    /// takes it.
    ///
    /// ```
    /// assert_eq!(consentry_scrubbers::RuleConfig::literal("a", ["b"]).name(), "a");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's description (may be empty).
    ///
    /// ```
    /// let rules = consentry_scrubbers::builtin_rules();
    /// assert!(rules.iter().all(|rule| !rule.description().is_empty()));
    /// ```
    pub fn description(&self) -> &str {
        &self.description
    }

    /// What the rule matches on.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, RuleKind};
    ///
    /// assert_eq!(RuleConfig::regex("a", "b").kind(), RuleKind::Regex);
    /// ```
    pub fn kind(&self) -> RuleKind {
        self.kind
    }

    /// How the rule redacts.
    ///
    /// ```
    /// use consentry_scrubbers::{Redaction, RuleConfig};
    ///
    /// assert_eq!(
    ///     RuleConfig::regex("a", "b").redaction(),
    ///     &Redaction::Placeholder("<redacted>".into())
    /// );
    /// ```
    pub fn redaction(&self) -> &Redaction {
        &self.redaction
    }
}

/// A set of rules, as kept in TOML or JSON files.
///
/// ```
/// use consentry_scrubbers::{RulePack, Scrubber};
///
/// let pack = RulePack::from_toml_str(r#"
///     [[rules]]
///     name = "employee-id"
///     description = "Employee numbers"
///     kind = "regex"
///     pattern = '\bEMP[0-9]{5}\b'
///     redaction = { placeholder = "<employee>" }
/// "#)?;
/// let scrubber = Scrubber::builder().rule_pack(pack).build()?;
/// assert_eq!(scrubber.scrub_text("EMP12345 logged in")?.0, "<employee> logged in");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulePack {
    #[serde(default)]
    rules: Vec<RuleConfig>,
}

impl RulePack {
    /// An empty pack.
    ///
    /// ```
    /// assert!(consentry_scrubbers::RulePack::new().rules().is_empty());
    /// ```
    pub fn new() -> Self {
        RulePack::default()
    }

    /// Parses a pack from TOML: an array of tables `[[rules]]`.
    ///
    /// ```
    /// let pack = consentry_scrubbers::RulePack::from_toml_str(
    ///     "[[rules]]\nname = \"a\"\nkind = \"literal\"\nvalues = [\"b\"]\n",
    /// )?;
    /// assert_eq!(pack.rules().len(), 1);
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`BuildError::Pack`] if the text is not a valid pack.
    pub fn from_toml_str(text: &str) -> Result<Self, BuildError> {
        toml::from_str(text).map_err(|err| BuildError::Pack {
            format: "toml",
            message: err.to_string().trim().to_owned(),
        })
    }

    /// Parses a pack from JSON: `{"rules": [...]}`.
    ///
    /// ```
    /// let pack = consentry_scrubbers::RulePack::from_json_str(
    ///     r#"{"rules": [{"name": "a", "kind": "key", "keys": ["pin"], "redaction": "mask"}]}"#,
    /// )?;
    /// assert_eq!(pack.rules()[0].name(), "a");
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`BuildError::Pack`] if the text is not a valid pack.
    pub fn from_json_str(text: &str) -> Result<Self, BuildError> {
        serde_json::from_str(text).map_err(|err| BuildError::Pack {
            format: "json",
            message: err.to_string(),
        })
    }

    /// Appends a rule.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, RulePack};
    ///
    /// let pack = RulePack::new().with_rule(RuleConfig::literal("a", ["b"]));
    /// assert_eq!(pack.rules().len(), 1);
    /// ```
    #[must_use]
    pub fn with_rule(mut self, rule: RuleConfig) -> Self {
        self.rules.push(rule);
        self
    }

    /// The pack's rules, in order.
    ///
    /// ```
    /// assert!(consentry_scrubbers::RulePack::new().rules().is_empty());
    /// ```
    pub fn rules(&self) -> &[RuleConfig] {
        &self.rules
    }

    pub(crate) fn into_rules(self) -> Vec<RuleConfig> {
        self.rules
    }
}

impl From<Vec<RuleConfig>> for RulePack {
    fn from(rules: Vec<RuleConfig>) -> Self {
        RulePack { rules }
    }
}
