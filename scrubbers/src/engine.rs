//! The scrubber: building it from identities, environment and rules, and scrubbing strings.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

use crate::builtin;
use crate::compile::{CompiledRule, MASK_BITS, Matcher, Stats, TriggerTable, compile_rule};
use crate::config::{Detector, Redaction, RuleConfig, RulePack};
use crate::env::{self, EnvMatcher};
use crate::error::{BuildError, ScrubError};
use crate::hash::{self, hash_with_salt};
use crate::identity::{self, IdKind, IdentityMatcher, IdentitySet, Learned};
pub use crate::inner::MAX_STRING_BYTES;
use crate::inner::{Ctx, Hits, Inner, TOO_LONG, str_error};
use crate::paths::{self, HomeLiterals};
use crate::report::Report;
use crate::validate;
use crate::walk;

/// How many times a string is scrubbed at most. The first pass does the work; the next one
/// normally finds nothing and proves the result stable. A string still changing after this
/// many passes is an error (fail closed) rather than output that a second scrub would change.
const MAX_PASSES: usize = 8;

/// After this many rejected matches in one string, or once the rejected matches add up to
/// more than twice the string's length, a rule resumes its search after a rejected match
/// instead of one character into it: the search stays linear on huge adversarial input.
const MAX_RETRIES: usize = 64;

/// Scrubs PII from events and text. Cheap to clone and to share across threads: the compiled
/// rules live behind an [`Arc`].
///
/// ```
/// use consentry_scrubbers::Scrubber;
/// use serde_json::json;
///
/// let scrubber = Scrubber::builder().user("alice").home_dir("/home/alice").build()?;
/// let mut event = json!({
///     "server_name": "alice-pc",
///     "exception": {"values": [{"type": "Error", "value": "cannot open /home/alice/.config/app.toml on alice-pc"}]},
/// });
/// let report = scrubber.scrub_value(&mut event)?;
/// assert_eq!(
///     event["exception"]["values"][0]["value"],
///     "cannot open ~/.config/app.toml on <hostname>"
/// );
/// assert_eq!(event["server_name"], "<hostname>");
/// assert_eq!(report.count_for_rule("hostname"), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Scrubber {
    inner: Arc<Inner>,
}

impl fmt::Debug for Scrubber {
    // Identities, environment values and the salt are exactly what must not leak, so they
    // are counted, never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Scrubber")
            .field("rules", &inner.enabled_rule_names().collect::<Vec<_>>())
            .field("identities", &inner.identities.names().count())
            .field("env_secrets", &inner.env.patterns().len())
            .field("salted", &!inner.salt.is_empty())
            .finish()
    }
}

/// Configures a [`Scrubber`]: who the running user is, the environment, the salt, and which
/// rules run.
///
/// ```
/// use consentry_scrubbers::{RuleConfig, Scrubber};
///
/// let scrubber = Scrubber::builder()
///     .user("alice")
///     .full_name("Alice Smith")
///     .hostname("alice-laptop.corp.example")
///     .home_dir("/home/alice")
///     .env_vars([("GITHUB_TOKEN".to_owned(), "not-a-real-token-0123".to_owned())])
///     .salt(b"per-install random bytes")
///     .disable_rule("phone")
///     .rule(RuleConfig::literal("codename", ["Nightingale"]))
///     .build()?;
/// let (text, _) = scrubber.scrub_text("Alice Smith on alice-laptop: not-a-real-token-0123")?;
/// assert_eq!(text, "<user> on <hostname>: <redacted>");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct ScrubberBuilder {
    users: Vec<String>,
    full_names: Vec<String>,
    hostnames: Vec<String>,
    home_dirs: Vec<String>,
    env: Vec<(String, String)>,
    salt: Vec<u8>,
    disabled: Vec<String>,
    rules: Vec<RuleConfig>,
}

impl fmt::Debug for ScrubberBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrubberBuilder")
            .field("users", &self.users.len())
            .field("full_names", &self.full_names.len())
            .field("hostnames", &self.hostnames.len())
            .field("home_dirs", &self.home_dirs.len())
            .field("env_vars", &self.env.len())
            .field("salted", &!self.salt.is_empty())
            .field("disabled", &self.disabled)
            .field(
                "rules",
                &self.rules.iter().map(RuleConfig::name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ScrubberBuilder {
    /// Adds the running user's login name (repeatable). Their home directory becomes `~` in
    /// every spelling, and the name is removed wherever it appears as a word, unless it is
    /// short or common (`root`, `admin`, names under 3 characters).
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().user("alice").build()?;
    /// assert_eq!(scrubber.scrub_text(r"C:\Users\alice\x.txt by ALICE")?.0, r"~\x.txt by <user>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn user(mut self, name: impl Into<String>) -> Self {
        self.users.push(name.into());
        self
    }

    /// Adds the running user's real name (repeatable), removed as a phrase and in handle
    /// spellings (`alice.smith`, `alice_smith`, `alicesmith`).
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().full_name("Alice Smith").build()?;
    /// assert_eq!(scrubber.scrub_text("by alice_smith")?.0, "by <user>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn full_name(mut self, name: impl Into<String>) -> Self {
        self.full_names.push(name.into());
        self
    }

    /// Adds the machine's hostname (repeatable); its short form, before the first `.`, is
    /// removed too.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().hostname("build7.corp.example").build()?;
    /// assert_eq!(scrubber.scrub_text("on BUILD7")?.0, "on <hostname>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn hostname(mut self, name: impl Into<String>) -> Self {
        self.hostnames.push(name.into());
        self
    }

    /// Adds the running user's home directory (repeatable); it becomes `~`. A standard home
    /// (`/home/alice`, `C:\Users\alice`) also makes its user the running user.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().home_dir("/var/lib/builder").build()?;
    /// assert_eq!(scrubber.scrub_text("/var/lib/builder/src/x.rs")?.0, "~/src/x.rs");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn home_dir(mut self, path: impl Into<String>) -> Self {
        self.home_dirs.push(path.into());
        self
    }

    /// Adds one variable of the process environment. Values of secret-looking names (`*TOKEN*`,
    /// `*SECRET*`, `*PASSWORD*`, `*KEY*`, `*AUTH*`, ...) and URLs with credentials are removed
    /// wherever they appear; `USER`, `USERNAME`, `LOGNAME`, `HOSTNAME`, `COMPUTERNAME`, `HOME`
    /// and `USERPROFILE` count as [`user`](Self::user), [`hostname`](Self::hostname) and
    /// [`home_dir`](Self::home_dir).
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder()
    ///     .env_var("DEPLOY_TOKEN", "tok-8c1f-55aa-e0d2")
    ///     .env_var("RUST_LOG", "debug")
    ///     .build()?;
    /// assert_eq!(
    ///     scrubber.scrub_text("auth tok-8c1f-55aa-e0d2 failed at debug level")?.0,
    ///     "auth <redacted> failed at debug level"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn env_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Adds many environment variables, e.g. `std::env::vars()`; see
    /// [`env_var`](Self::env_var).
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().env_vars(std::env::vars()).build()?;
    /// # let _ = scrubber;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn env_vars<I>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (String, String)>,
    {
        self.env.extend(vars);
        self
    }

    /// Sets the per-install salt of the `hash` redaction (HMAC-SHA256 key). Without one, the
    /// hash is unsalted and equal values hash equally on every install.
    ///
    /// ```
    /// let a = consentry_scrubbers::Scrubber::builder().salt(b"a").build()?;
    /// let b = consentry_scrubbers::Scrubber::builder().salt(b"b").build()?;
    /// assert_ne!(a.hash("x"), b.hash("x"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn salt(mut self, salt: impl AsRef<[u8]>) -> Self {
        self.salt = salt.as_ref().to_vec();
        self
    }

    /// Turns a rule off by name (builtin or added). An unknown name is a build error.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().disable_rule("email").build()?;
    /// assert_eq!(scrubber.scrub_text("bob@example.com")?.0, "bob@example.com");
    /// assert!(consentry_scrubbers::Scrubber::builder().disable_rule("nope").build().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn disable_rule(mut self, name: &str) -> Self {
        self.disabled.push(name.to_owned());
        self
    }

    /// Adds an app's own rule; it runs after the builtin rules.
    ///
    /// ```
    /// use consentry_scrubbers::{RuleConfig, Scrubber};
    ///
    /// let scrubber = Scrubber::builder().rule(RuleConfig::key("pin", ["pin"])).build()?;
    /// let mut event = serde_json::json!({"pin": "1234"});
    /// scrubber.scrub_value(&mut event)?;
    /// assert_eq!(event["pin"], "<redacted>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rule(mut self, rule: RuleConfig) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds every rule of a pack, in order.
    ///
    /// ```
    /// use consentry_scrubbers::{RulePack, Scrubber};
    ///
    /// let pack = RulePack::from_json_str(
    ///     r#"{"rules": [{"name": "codename", "kind": "literal", "values": ["Nightingale"]}]}"#,
    /// )?;
    /// let scrubber = Scrubber::builder().rule_pack(pack).build()?;
    /// assert_eq!(scrubber.scrub_text("Nightingale")?.0, "<redacted>");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn rule_pack(mut self, pack: RulePack) -> Self {
        self.rules.extend(pack.into_rules());
        self
    }

    /// Compiles the rules. The builtin rules are compiled once per process and shared; the
    /// rest (identities, environment, app rules) takes a few milliseconds at most.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// # let _ = scrubber;
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the rule and what is wrong: a bad pattern, a pattern over its
    /// size limit, a missing field, a duplicate name, an unknown rule to disable.
    pub fn build(self) -> Result<Scrubber, BuildError> {
        Ok(Scrubber {
            inner: Arc::new(Inner::new(self)?),
        })
    }
}

/// One place in a string to rewrite.
#[derive(Debug)]
struct Edit {
    range: Range<usize>,
    rule: usize,
    tilde: bool,
}

fn id_kind_slot(kind: IdKind) -> usize {
    match kind {
        IdKind::User => 0,
        IdKind::FullName => 1,
        IdKind::Host => 2,
    }
}

impl Inner {
    fn new(b: ScrubberBuilder) -> Result<Inner, BuildError> {
        let builtin = builtin::compiled()?;
        paths::check_compiled()?;
        identity::check_compiled()?;

        let mut names: Vec<&str> = builtin.rules.iter().map(|r| r.name.as_str()).collect();
        let mut user_rules = Vec::with_capacity(b.rules.len());
        for cfg in &b.rules {
            if names.contains(&cfg.name.as_str()) {
                return Err(BuildError::Duplicate {
                    rule: cfg.name.clone(),
                });
            }
            names.push(&cfg.name);
            user_rules.push(compile_rule(cfg, false)?);
        }
        let total = builtin.rules.len() + user_rules.len();
        let mut enabled = vec![true; total];
        for name in &b.disabled {
            match names.iter().position(|n| n == name) {
                Some(i) => {
                    if let Some(slot) = enabled.get_mut(i) {
                        *slot = false;
                    }
                }
                None => return Err(BuildError::UnknownRule { rule: name.clone() }),
            }
        }
        let rule_at = |i: usize| -> Option<&CompiledRule> {
            builtin
                .rules
                .get(i)
                .or_else(|| user_rules.get(i.checked_sub(builtin.rules.len())?))
        };
        let is_on = |i: usize| enabled.get(i).copied().unwrap_or(false);

        // Identities: given, and from the environment.
        let mut users = b.users.clone();
        let mut hosts = b.hostnames.clone();
        let mut homes = b.home_dirs.clone();
        for (name, value) in &b.env {
            match name.to_ascii_uppercase().as_str() {
                "USER" | "USERNAME" | "LOGNAME" => users.push(value.clone()),
                "HOSTNAME" | "COMPUTERNAME" => hosts.push(value.clone()),
                "HOME" | "USERPROFILE" => homes.push(value.clone()),
                _ => {}
            }
        }
        let mut literal_homes = Vec::new();
        for home in &homes {
            match paths::user_of_home_dir(home) {
                Some(user) => users.push(user),
                None => literal_homes.push(home.clone()),
            }
        }
        let mut running_users: Vec<String> = Vec::new();
        for user in &users {
            let user = user.trim().to_lowercase();
            if !user.is_empty() && !running_users.contains(&user) {
                running_users.push(user);
            }
        }
        if running_users.iter().any(|u| u == "root") && homes.is_empty() {
            literal_homes.push("/root".to_owned());
        }
        // The running user's standard homes are found literally too: far cheaper than the
        // home-path regex, and they are in most paths of most events.
        for user in &users {
            let user = user.trim();
            if user.is_empty() || user.contains(['/', '\\']) {
                continue;
            }
            for home in [
                format!("/home/{user}"),
                format!("/Users/{user}"),
                format!("C:\\Users\\{user}"),
                format!("\\\\?\\C:\\Users\\{user}"),
            ] {
                if !literal_homes.contains(&home) {
                    literal_homes.push(home);
                }
            }
        }
        let home_literals = HomeLiterals::new(&literal_homes)?;

        let mut identities = IdentitySet::default();
        for user in &users {
            identities.add(IdKind::User, user);
        }
        for name in &b.full_names {
            identities.add_full_name(name);
        }
        for host in &hosts {
            identities.add_host(host);
        }

        let mut id_rules = [None; 3];
        let mut id_stage = None;
        let mut home_rule = None;
        let mut env_rule = None;
        let mut key_rules = Vec::new();
        for i in 0..total {
            let Some(rule) = rule_at(i) else { continue };
            if !is_on(i) {
                continue;
            }
            if rule.is_key_rule() {
                key_rules.push(i);
            }
            let kind = match rule.detector() {
                Some(Detector::UserName) => IdKind::User,
                Some(Detector::FullName) => IdKind::FullName,
                Some(Detector::Hostname) => IdKind::Host,
                Some(Detector::HomePath) => {
                    home_rule.get_or_insert(i);
                    continue;
                }
                Some(Detector::EnvSecret) => {
                    env_rule.get_or_insert(i);
                    continue;
                }
                None => continue,
            };
            if let Some(slot) = id_rules.get_mut(id_kind_slot(kind)) {
                slot.get_or_insert(i);
            }
            id_stage.get_or_insert(i);
        }
        let id_matcher = identities.compile(
            |k| id_rules.get(id_kind_slot(k)).is_some_and(Option::is_some),
            true,
        )?;
        let env = EnvMatcher::new(env::secret_values(&b.env))?;

        // Literals that wake the detectors up in the prefilter.
        let mut extra: Vec<(String, usize)> = Vec::new();
        if let Some(stage) = id_stage {
            extra.extend(id_matcher.patterns().iter().map(|p| (p.clone(), stage)));
            if id_rules
                .get(id_kind_slot(IdKind::Host))
                .is_some_and(Option::is_some)
            {
                extra.push(("\\\\".to_owned(), stage));
            }
        }
        if let Some(i) = env_rule {
            extra.extend(env.patterns().iter().map(|p| (p.clone(), i)));
        }
        if let Some(i) = home_rule {
            extra.extend(home_literals.patterns().iter().map(|p| (p.clone(), i)));
        }
        let specs: Vec<_> = (0..total)
            .filter_map(|i| rule_at(i).map(|r| (i, &r.prefilter)))
            .collect();
        let triggers = TriggerTable::build(specs.into_iter(), &extra)?;

        let mut enabled_mask = 0u128;
        for i in 0..total.min(MASK_BITS) {
            if is_on(i) && rule_at(i).is_some_and(|r| !r.is_key_rule()) {
                enabled_mask |= 1 << i;
            }
        }

        // Placeholders written by enabled rules are never matched again: scrubbing twice
        // must not rewrite `<user>` because someone's hostname is `user`.
        let mut placeholders: Vec<String> = Vec::new();
        for i in 0..total {
            if let Some(rule) = rule_at(i)
                && is_on(i)
                && let Redaction::Placeholder(p) = &rule.redaction
                && p.chars().count() >= 2
                && !placeholders.contains(p)
            {
                placeholders.push(p.clone());
            }
        }
        let protector = if placeholders.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&placeholders)
                    .map_err(|err| BuildError::Rule {
                        rule: "placeholders".to_owned(),
                        message: err.to_string(),
                    })?,
            )
        };

        Ok(Inner {
            builtin,
            user_rules,
            enabled,
            enabled_mask,
            triggers,
            identities,
            id_matcher,
            id_rules,
            id_stage,
            running_users,
            home_literals,
            env,
            protector,
            key_rules,
            salt: b.salt,
        })
    }

    fn rule(&self, i: usize) -> Option<&CompiledRule> {
        self.builtin.rules.get(i).or_else(|| {
            self.user_rules
                .get(i.checked_sub(self.builtin.rules.len())?)
        })
    }

    fn rule_count(&self) -> usize {
        self.builtin.rules.len() + self.user_rules.len()
    }

    pub(crate) fn rule_name(&self, i: usize) -> &str {
        self.rule(i).map_or("unknown", |r| r.name.as_str())
    }

    fn enabled_rule_names(&self) -> impl Iterator<Item = &str> {
        (0..self.rule_count())
            .filter(|i| self.enabled.get(*i).copied().unwrap_or(false))
            .filter_map(|i| self.rule(i).map(|r| r.name.as_str()))
    }

    /// The identity context for identities learned from an event (if any).
    pub(crate) fn ctx<'a>(&'a self, learned: Option<&'a IdentityMatcher>) -> Ctx<'a> {
        Ctx { learned }
    }

    /// A matcher for the identities learned from one event that the scrubber does not know
    /// already, or `None` if there are none.
    pub(crate) fn learned_matcher(
        &self,
        learned: &Learned,
    ) -> Result<Option<IdentityMatcher>, ScrubError> {
        if learned.is_empty() || self.id_stage.is_none() {
            return Ok(None);
        }
        let mut new = IdentitySet::default();
        for user in &learned.users {
            if !self.identities.contains(user) {
                new.add(IdKind::User, user);
            }
        }
        for host in &learned.hosts {
            let mut hosts = IdentitySet::default();
            hosts.add_host(host);
            for (name, kind) in hosts.names() {
                if !self.identities.contains(name) {
                    new.add(kind, name);
                }
            }
        }
        if new.names().next().is_none() {
            return Ok(None);
        }
        let keep = |k| {
            self.id_rules
                .get(id_kind_slot(k))
                .is_some_and(Option::is_some)
        };
        new.compile(keep, false)
            .map(Some)
            .map_err(|err| ScrubError::Internal {
                path: String::new(),
                message: err.to_string(),
            })
    }

    /// Learns identities from one string of an event. The running user's own home paths,
    /// by far the most common, teach nothing and are recognised without a regex.
    pub(crate) fn learn(&self, text: &str, learned: &mut Learned) {
        identity::learn_from_str_quick(text, &self.running_users, learned);
    }

    /// The hostname rule, if enabled.
    pub(crate) fn hostname_rule(&self) -> Option<usize> {
        self.id_rules
            .get(id_kind_slot(IdKind::Host))
            .copied()
            .flatten()
    }

    /// The index of the enabled rule named `name`, if any.
    pub(crate) fn enabled_rule(&self, name: &str) -> Option<usize> {
        (0..self.rule_count()).find(|&i| {
            self.enabled.get(i).copied().unwrap_or(false)
                && self.rule(i).is_some_and(|r| r.name == name)
        })
    }

    /// The first enabled key rule matching `key`.
    pub(crate) fn key_rule_for(&self, key: &str) -> Option<usize> {
        self.key_rules.iter().copied().find(|&i| {
            self.rule(i)
                .is_some_and(|r| matches!(&r.matcher, Matcher::Key(k) if k.matches(key)))
        })
    }

    /// What a rule writes in place of `original`.
    pub(crate) fn redact<'t>(&self, rule: usize, original: &'t str) -> Cow<'t, str> {
        let Some(rule) = self.rule(rule) else {
            return Cow::Borrowed(crate::REDACTED);
        };
        match &rule.redaction {
            Redaction::Placeholder(p) => Cow::Owned(p.clone()),
            Redaction::Mask => Cow::Owned("*".repeat(original.chars().count())),
            Redaction::Remove => Cow::Borrowed(""),
            Redaction::Hash => Cow::Owned(hash_with_salt(&self.salt, original)),
        }
    }

    /// Redacts a whole value under a matching key. Values that are already what the rule
    /// writes stay as they are, so that scrubbing twice changes nothing.
    pub(crate) fn redact_whole(&self, rule: usize, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        let already = match self.rule(rule).map(|r| &r.redaction) {
            Some(Redaction::Hash) => hash::hash_len_at(value, 0) == Some(value.len()),
            Some(Redaction::Mask) => value.chars().all(|c| c == '*'),
            _ => false,
        };
        if already {
            return None;
        }
        let new = self.redact(rule, value);
        (new != value).then(|| new.into_owned())
    }

    pub(crate) fn hash(&self, value: &str) -> String {
        hash_with_salt(&self.salt, value)
    }

    /// Scrubs one string until it no longer changes. `None` if it was clean.
    pub(crate) fn scrub_str(
        &self,
        ctx: &Ctx<'_>,
        text: &str,
        hits: &mut Hits,
    ) -> Result<Option<String>, usize> {
        if text.len() > MAX_STRING_BYTES {
            return Err(TOO_LONG);
        }
        let mut current: Option<String> = None;
        for _ in 0..MAX_PASSES {
            let source = current.as_deref().unwrap_or(text);
            match self.pass(ctx, source, hits) {
                Some(next) => current = Some(next),
                None => return Ok(current),
            }
        }
        Err(MAX_PASSES)
    }

    /// One pass of every rule that may match.
    fn pass(&self, ctx: &Ctx<'_>, source: &str, hits: &mut Hits) -> Option<String> {
        let stats = Stats::of(source);
        let mut mask = self.triggers.mask(source, &stats) & self.enabled_mask;
        if ctx.learned.is_some()
            && let Some(stage) = self.id_stage
            && stage < MASK_BITS
        {
            mask |= 1 << stage;
        }
        let mut current: Cow<'_, str> = Cow::Borrowed(source);
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(next) = self.apply(i, ctx, &current, hits) {
                current = Cow::Owned(next);
            }
        }
        for i in MASK_BITS..self.rule_count() {
            if self.enabled.get(i).copied().unwrap_or(false)
                && let Some(next) = self.apply(i, ctx, &current, hits)
            {
                current = Cow::Owned(next);
            }
        }
        match current {
            Cow::Owned(s) => Some(s),
            Cow::Borrowed(_) => None,
        }
    }

    /// Runs rule `i` over `text`.
    fn apply(&self, i: usize, ctx: &Ctx<'_>, text: &str, hits: &mut Hits) -> Option<String> {
        let rule = self.rule(i)?;
        let mut edits = Vec::new();
        match &rule.matcher {
            Matcher::Regex {
                re,
                group,
                validator,
            } => {
                if group.is_none() && validator.is_none() {
                    edits.extend(re.find_iter(text).map(|m| Edit {
                        range: m.range(),
                        rule: i,
                        tilde: false,
                    }));
                } else {
                    regex_edits(re, *group, *validator, text, i, &mut edits);
                }
            }
            Matcher::Literal { ac, whole_word } => {
                if *whole_word {
                    edits.extend(
                        identity::find_tokens(ac, text)
                            .into_iter()
                            .map(|(_, range)| Edit {
                                range,
                                rule: i,
                                tilde: false,
                            }),
                    );
                } else {
                    edits.extend(ac.find_iter(text).map(|m| Edit {
                        range: m.start()..m.end(),
                        rule: i,
                        tilde: false,
                    }));
                }
            }
            Matcher::Key(_) => return None,
            Matcher::Detector(Detector::HomePath) => return self.apply_home(i, text, hits),
            Matcher::Detector(Detector::EnvSecret) => {
                edits.extend(self.env.find(text).into_iter().map(|range| Edit {
                    range,
                    rule: i,
                    tilde: false,
                }));
            }
            Matcher::Detector(Detector::UserName | Detector::FullName | Detector::Hostname) => {
                if self.id_stage != Some(i) {
                    return None;
                }
                for (range, kind) in self.id_matcher.find(ctx.learned, text) {
                    if let Some(Some(rule)) = self.id_rules.get(id_kind_slot(kind)) {
                        edits.push(Edit {
                            range,
                            rule: *rule,
                            tilde: false,
                        });
                    }
                }
                // The host of a UNC path goes whatever its name, like the user of a home path.
                if let Some(Some(rule)) = self.id_rules.get(id_kind_slot(IdKind::Host)) {
                    let hosts = identity::unc_hosts(text);
                    if !hosts.is_empty() {
                        edits.extend(hosts.into_iter().map(|range| Edit {
                            range,
                            rule: *rule,
                            tilde: false,
                        }));
                        edits.sort_by(|a, b| {
                            a.range
                                .start
                                .cmp(&b.range.start)
                                .then(b.range.end.cmp(&a.range.end))
                        });
                    }
                }
            }
        }
        self.apply_edits(text, &edits, hits)
    }

    /// Home paths: the running user's non-standard homes first, then every standard home.
    fn apply_home(&self, i: usize, text: &str, hits: &mut Hits) -> Option<String> {
        let literal_edits: Vec<Edit> = self
            .home_literals
            .find(text)
            .into_iter()
            .map(|range| Edit {
                range,
                rule: i,
                tilde: true,
            })
            .collect();
        let first = self.apply_edits(text, &literal_edits, hits);
        let text2 = first.as_deref().unwrap_or(text);
        if first.is_some() && !paths::may_hold_home(text2) {
            return first;
        }
        let mut edits = Vec::new();
        let host_rule = self
            .id_rules
            .get(id_kind_slot(IdKind::Host))
            .copied()
            .flatten();
        for hit in paths::home_hits(text2) {
            let Some(user) = text2.get(hit.user.clone()) else {
                continue;
            };
            // The host of `//server/Users/bob` goes like the host of `\\server\Users\bob`.
            if let (Some(range), Some(rule)) = (hit.host.clone(), host_rule) {
                edits.push(Edit {
                    range,
                    rule,
                    tilde: false,
                });
            }
            let user = paths::decode(user).to_lowercase();
            let running = self.running_users.contains(&user);
            if running && hit.shape.may_be_own() {
                edits.push(Edit {
                    range: hit.home,
                    rule: i,
                    tilde: true,
                });
            } else {
                edits.push(Edit {
                    range: hit.user,
                    rule: i,
                    tilde: false,
                });
            }
        }
        self.apply_edits(text2, &edits, hits).or(first)
    }

    /// Spans of placeholders (and hashes) already in `text`, which no rule may touch: sorted
    /// and disjoint, so that an edit is checked against them by binary search.
    fn protected(&self, text: &str) -> Vec<Range<usize>> {
        let mut spans = Vec::new();
        if !text.contains('<') {
            return spans;
        }
        if let Some(protector) = &self.protector {
            spans.extend(protector.find_iter(text).map(|m| m.start()..m.end()));
        }
        let mut from = 0;
        while let Some(offset) = text.get(from..).and_then(|s| s.find(hash::HASH_PREFIX)) {
            let start = from + offset;
            if let Some(len) = hash::hash_len_at(text, start) {
                spans.push(start..start + len);
            }
            from = start + 1;
        }
        spans.sort_unstable_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
        for span in spans {
            match merged.last_mut() {
                Some(last) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push(span),
            }
        }
        merged
    }

    /// Applies non-overlapping edits left to right; `None` if nothing changed.
    fn apply_edits(&self, text: &str, edits: &[Edit], hits: &mut Hits) -> Option<String> {
        if edits.is_empty() {
            return None;
        }
        let protected = self.protected(text);
        let mut out = String::with_capacity(text.len() + 16);
        let mut last = 0;
        let mut changed = false;
        for edit in edits {
            let range = &edit.range;
            if range.start < last || range.is_empty() {
                continue;
            }
            // The first protected span ending after the edit starts; it overlaps the edit if
            // it also starts before the edit ends (spans are sorted and disjoint).
            let first = protected.partition_point(|p| p.end <= range.start);
            if protected.get(first).is_some_and(|p| p.start < range.end) {
                continue;
            }
            let (Some(original), Some(before)) =
                (text.get(range.clone()), text.get(last..range.start))
            else {
                continue;
            };
            let replacement = if edit.tilde {
                Cow::Borrowed("~")
            } else {
                self.redact(edit.rule, original)
            };
            if replacement == original {
                continue;
            }
            out.push_str(before);
            out.push_str(&replacement);
            last = range.end;
            changed = true;
            match hits.iter_mut().find(|(rule, _)| *rule == edit.rule) {
                Some((_, count)) => *count += 1,
                None => hits.push((edit.rule, 1)),
            }
        }
        if !changed {
            return None;
        }
        out.push_str(text.get(last..).unwrap_or(""));
        Some(out)
    }

    pub(crate) fn record(&self, hits: &Hits, path: &str, report: &mut Report) {
        for (rule, count) in hits {
            report.add(self.rule_name(*rule), path, *count);
        }
    }
}

/// Regex matches that need a capture group or a validator. A rejected match may hide a real
/// one starting inside it (`url=https://x?token=y`), so the search resumes one character on,
/// up to [`MAX_RETRIES`] times per string. Captures are only taken for a match, so a string
/// without one costs a single DFA scan.
fn regex_edits(
    re: &regex::Regex,
    group: Option<usize>,
    validator: Option<crate::config::Validator>,
    text: &str,
    rule: usize,
    edits: &mut Vec<Edit>,
) {
    let with_captures = group.is_some() || validator.is_some_and(validate::needs_captures);
    let step = |at: usize| {
        text.get(at..)
            .and_then(|s| s.chars().next())
            .map_or(at + 1, |c| at + c.len_utf8())
    };
    let mut pos = 0;
    let mut retries = 0;
    let mut budget = 2 * text.len() + 4096;
    while pos <= text.len() {
        let Some(found) = re.find_at(text, pos) else {
            break;
        };
        let caps = if with_captures {
            // The same search from the same place finds the same match.
            re.captures_at(text, pos)
        } else {
            None
        };
        let whole = caps
            .as_ref()
            .and_then(|c| c.get(0))
            .map_or(found.range(), |m| m.range());
        let span = group
            .and_then(|g| caps.as_ref()?.get(g))
            .map_or(whole.clone(), |m| m.range());
        let accepted = match validator {
            None => Some(span.clone()),
            Some(v) => validate::check(v, text, caps.as_ref(), span.clone()),
        };
        match accepted {
            Some(accepted) => {
                let resume = if accepted.end < span.end {
                    accepted.end
                } else {
                    whole.end
                };
                if !accepted.is_empty() {
                    edits.push(Edit {
                        range: accepted,
                        rule,
                        tilde: false,
                    });
                }
                pos = resume.max(step(whole.start));
            }
            None if retries < MAX_RETRIES && whole.len() <= budget => {
                retries += 1;
                budget -= whole.len();
                pos = step(whole.start);
            }
            None => pos = whole.end.max(step(whole.start)),
        }
    }
}

impl Scrubber {
    /// Starts configuring a scrubber.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().user("alice").build()?;
    /// # let _ = scrubber;
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    pub fn builder() -> ScrubberBuilder {
        ScrubberBuilder::default()
    }

    /// Scrubs a whole event (or any JSON) in place.
    ///
    /// It first learns identities from the value itself: user names from home paths anywhere,
    /// hostnames from `server_name`, `contexts.device.name`, `HOSTNAME=`/`COMPUTERNAME=` pairs
    /// and UNC paths. Then it scrubs every string and every map key at any depth. A key that
    /// changes is renamed; if two keys end up equal, the later gets a `#2` (`#3`, ...) suffix,
    /// so objects keep their size. Values under secret-looking keys are replaced whatever
    /// they hold (strings by the placeholder, numbers by `0`). The output has the same shape:
    /// same types, same array lengths, same number of keys per object.
    ///
    /// ```
    /// use consentry_scrubbers::Scrubber;
    /// use serde_json::json;
    ///
    /// let scrubber = Scrubber::builder().build()?;
    /// let mut event = json!({
    ///     "exception": {"values": [{"stacktrace": {"frames": [
    ///         {"abs_path": "/home/bob/src/app/src/main.rs", "lineno": 42},
    ///     ]}}]},
    ///     "message": "bob hit ctrl-c",
    ///     "request": {"headers": {"Authorization": "Bearer abc.def.ghi"}},
    /// });
    /// scrubber.scrub_value(&mut event)?;
    /// assert_eq!(
    ///     event,
    ///     json!({
    ///         "exception": {"values": [{"stacktrace": {"frames": [
    ///             {"abs_path": "/home/<user>/src/app/src/main.rs", "lineno": 42},
    ///         ]}}]},
    ///         "message": "<user> hit ctrl-c",
    ///         "request": {"headers": {"Authorization": "<redacted>"}},
    ///     })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScrubError`] if a string would not settle. The value may then be partly scrubbed:
    /// drop it.
    pub fn scrub_value(&self, value: &mut Value) -> Result<Report, ScrubError> {
        walk::scrub_value(&self.inner, value)
    }

    /// Scrubs plain text, such as a log or a report pasted into a bug. Identities are learned
    /// from the text itself first, as [`scrub_value`](Self::scrub_value) does.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().build()?;
    /// let (text, report) = scrubber.scrub_text(
    ///     "HOSTNAME=ci-box-17\nerror: token=abc123 rejected by ci-box-17",
    /// )?;
    /// assert_eq!(text, "HOSTNAME=<hostname>\nerror: token=<redacted> rejected by <hostname>");
    /// assert_eq!(report.total(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ScrubError`] if the text would not settle.
    pub fn scrub_text(&self, text: &str) -> Result<(String, Report), ScrubError> {
        let inner = &self.inner;
        if text.len() > MAX_STRING_BYTES {
            return Err(str_error(String::new(), TOO_LONG));
        }
        let mut known = Learned::default();
        identity::learn_from_str(text, &mut known);
        let mut report = Report::new();
        let mut current = text.to_owned();
        // As for events: scrubbing can uncover identities, which are chased in another round.
        for _ in 0..walk::MAX_ROUNDS {
            let learned = inner.learned_matcher(&known)?;
            let ctx = inner.ctx(learned.as_ref());
            let mut hits = Hits::new();
            let result = inner
                .scrub_str(&ctx, &current, &mut hits)
                .map_err(|passes| str_error(String::new(), passes))?;
            inner.record(&hits, "", &mut report);
            let Some(next) = result else {
                return Ok((current, report));
            };
            let mut uncovered = Learned::default();
            inner.learn(&next, &mut uncovered);
            current = next;
            let added = known.absorb(uncovered);
            if inner.learned_matcher(&added)?.is_none() {
                return Ok((current, report));
            }
        }
        Err(ScrubError::Unstable {
            path: String::new(),
            passes: walk::MAX_ROUNDS,
        })
    }

    /// The salted hash of a value exactly as the `hash` redaction writes it (see
    /// [`hash_with_salt`]).
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().salt(b"s").build()?;
    /// assert_eq!(scrubber.hash("x"), consentry_scrubbers::hash_with_salt(b"s", "x"));
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    pub fn hash(&self, value: &str) -> String {
        self.inner.hash(value)
    }

    /// The names of the rules that run, in order.
    ///
    /// ```
    /// let scrubber = consentry_scrubbers::Scrubber::builder().disable_rule("phone").build()?;
    /// let names: Vec<&str> = scrubber.rule_names().collect();
    /// assert!(names.contains(&"email") && !names.contains(&"phone"));
    /// # Ok::<(), consentry_scrubbers::BuildError>(())
    /// ```
    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.inner.enabled_rule_names()
    }
}
