//! Compiling rule configs into matchers, and the prefilter that decides per string which
//! rules can match at all.
//!
//! Most strings of an event match nothing, so the cost that matters is that of rejecting a
//! clean string. One pass over its bytes records which bytes occur and how many digits; one
//! Aho-Corasick scan finds the rules' trigger literals. Only rules whose triggers occur (and
//! whose required bytes and digit counts are met) run their regexes.

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexBuilder};

use crate::config::{Detector, Redaction, RuleConfig, RuleKind, Validator};
use crate::error::BuildError;
use crate::keys::KeyMatcher;

/// Default and largest compiled size of an app's regex.
const DEFAULT_SIZE_LIMIT: usize = 1 << 20;
const MAX_SIZE_LIMIT: usize = 16 << 20;
/// Size limit for the builtin patterns, which are known to fit.
const BUILTIN_SIZE_LIMIT: usize = 8 << 20;

/// How many rules the prefilter tracks in its bit masks; rules past this always run.
pub(crate) const MASK_BITS: usize = 128;

/// A set of bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 4]);

impl ByteSet {
    pub(crate) fn insert(&mut self, b: u8) {
        let i = usize::from(b >> 6);
        if let Some(word) = self.0.get_mut(i) {
            *word |= 1 << (b & 63);
        }
    }

    pub(crate) fn contains(&self, b: u8) -> bool {
        let i = usize::from(b >> 6);
        self.0
            .get(i)
            .is_some_and(|word| word & (1 << (b & 63)) != 0)
    }

    fn contains_all(&self, other: &ByteSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & b == *b)
    }
}

/// What one pass over a string's bytes learns: enough to rule out most rules for most
/// strings without running their regexes.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) present: ByteSet,
    pub(crate) digits: usize,
    /// ASCII upper-case letters.
    pub(crate) upper: usize,
    /// The most digits in one run of digits, single spaces and dashes (`4111 1111-...`).
    pub(crate) digit_run: usize,
    /// Dots between two digits (an IPv4 address has three).
    pub(crate) digit_dots: usize,
    /// Colons and dashes between two hex digits (a MAC address has five).
    pub(crate) hex_seps: usize,
    /// Dots between two hex digits (Cisco's `001a.2b3c.4d5e` has two).
    pub(crate) hex_dots: usize,
    /// The most ASCII letters and digits in a row (a random token has many).
    pub(crate) alnum_run: usize,
}

impl Stats {
    pub(crate) fn of(text: &str) -> Stats {
        let mut present = [0u64; 4];
        let mut digits = 0;
        let mut upper = 0;
        let mut run = 0;
        let mut digit_run = 0;
        let mut digit_dots = 0;
        let mut hex_seps = 0;
        let mut hex_dots = 0;
        let mut alnum = 0usize;
        let mut alnum_run = 0usize;
        // The two bytes before the current one.
        let (mut p1, mut p2) = (0u8, 0u8);
        for &b in text.as_bytes() {
            present[usize::from(b >> 6)] |= 1 << (b & 63);
            if b.is_ascii_digit() {
                digits += 1;
                run += 1;
                digit_run = digit_run.max(run);
                digit_dots += usize::from(p1 == b'.' && p2.is_ascii_digit());
            } else if (b == b' ' || b == b'-' || b == b'.') && p1.is_ascii_digit() {
                // A single separator keeps the run going.
            } else {
                run = 0;
            }
            upper += usize::from(b.is_ascii_uppercase());
            // Branch-free: this loop runs over every byte of every string.
            alnum = (alnum + 1) * usize::from(b.is_ascii_alphanumeric());
            alnum_run = alnum_run.max(alnum);
            hex_seps += usize::from(
                b.is_ascii_hexdigit() && (p1 == b':' || p1 == b'-') && p2.is_ascii_hexdigit(),
            );
            hex_dots += usize::from(b.is_ascii_hexdigit() && p1 == b'.' && p2.is_ascii_hexdigit());
            p2 = p1;
            p1 = b;
        }
        Stats {
            present: ByteSet(present),
            digits,
            upper,
            digit_run,
            digit_dots,
            hex_seps,
            hex_dots,
            alnum_run,
        }
    }
}

/// The least a string must have for a validator's regex to possibly match and pass.
fn precheck(validator: Option<Validator>, stats: &Stats) -> bool {
    match validator {
        Some(Validator::Card) => stats.digit_run >= 13,
        Some(Validator::Ssn) => stats.digit_run >= 9,
        Some(Validator::Iban) => stats.upper >= 2 && stats.digits >= 6,
        Some(Validator::Ipv4) => stats.digit_dots >= 3,
        Some(Validator::Mac) => stats.hex_seps >= 5 || stats.hex_dots >= 2,
        Some(Validator::PhoneNational) => stats.digit_run >= 7,
        Some(Validator::CryptoAddress) => stats.alnum_run >= 25,
        Some(Validator::RandomAssignment) => {
            stats.alnum_run >= 10
                && stats.digits >= 2
                && (stats.present.contains(b'=') || stats.present.contains(b':'))
        }
        _ => true,
    }
}

/// A compiled rule.
#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub(crate) name: String,
    pub(crate) redaction: Redaction,
    pub(crate) matcher: Matcher,
    pub(crate) prefilter: PrefilterSpec,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    Regex {
        re: Regex,
        group: Option<usize>,
        validator: Option<Validator>,
    },
    Literal {
        ac: AhoCorasick,
        whole_word: bool,
    },
    Key(KeyMatcher),
    Detector(Detector),
}

impl CompiledRule {
    pub(crate) fn is_key_rule(&self) -> bool {
        matches!(self.matcher, Matcher::Key(_))
    }

    pub(crate) fn detector(&self) -> Option<Detector> {
        match self.matcher {
            Matcher::Detector(d) => Some(d),
            _ => None,
        }
    }
}

/// A rule's prefilter: it runs on a string only if one of `triggers` occurs in it (or there
/// are none), every byte of `requires` occurs, and it has at least `min_digits` digits.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrefilterSpec {
    pub(crate) triggers: Vec<String>,
    pub(crate) requires: ByteSet,
    pub(crate) min_digits: usize,
    /// The rule's validator, whose precheck the prefilter applies.
    pub(crate) validator: Option<Validator>,
    /// Detectors and key rules only run when the scrubber adds literals for them (or never,
    /// for key rules, which apply to map values, not strings).
    pub(crate) never_alone: bool,
}

fn rule_error(rule: &str, message: impl Into<String>) -> BuildError {
    BuildError::Rule {
        rule: rule.to_owned(),
        message: message.into(),
    }
}

fn check_name(name: &str) -> Result<(), BuildError> {
    if name.is_empty() {
        return Err(rule_error(name, "a rule needs a non-empty `name`"));
    }
    if name.chars().count() > 64 || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(rule_error(
            name,
            "a rule name must be at most 64 characters without spaces",
        ));
    }
    Ok(())
}

/// Compiles one rule.
pub(crate) fn compile_rule(cfg: &RuleConfig, builtin: bool) -> Result<CompiledRule, BuildError> {
    let name = cfg.name.as_str();
    check_name(name)?;
    let unexpected = |field: &str, present: bool| -> Result<(), BuildError> {
        if present {
            Err(rule_error(
                name,
                format!("`{field}` does not apply to kind `{}`", kind_name(cfg.kind)),
            ))
        } else {
            Ok(())
        }
    };
    let case_insensitive = cfg.case_insensitive;
    let matcher = match cfg.kind {
        RuleKind::Regex => {
            unexpected("values", !cfg.values.is_empty())?;
            unexpected("keys", !cfg.keys.is_empty())?;
            unexpected("detector", cfg.detector.is_some())?;
            unexpected("whole_word", cfg.whole_word.is_some())?;
            let Some(pattern) = &cfg.pattern else {
                return Err(rule_error(name, "kind `regex` needs a `pattern`"));
            };
            let limit = match cfg.size_limit {
                Some(limit) if limit > MAX_SIZE_LIMIT => {
                    return Err(rule_error(
                        name,
                        format!("`size_limit` {limit} is over the maximum {MAX_SIZE_LIMIT}"),
                    ));
                }
                Some(limit) => limit,
                None if builtin => BUILTIN_SIZE_LIMIT,
                None => DEFAULT_SIZE_LIMIT,
            };
            let re = RegexBuilder::new(pattern)
                .case_insensitive(case_insensitive.unwrap_or(false))
                .size_limit(limit)
                .dfa_size_limit(limit.max(DEFAULT_SIZE_LIMIT))
                .build()
                .map_err(|err| BuildError::Pattern {
                    rule: name.to_owned(),
                    message: err.to_string(),
                })?;
            let group = match &cfg.group {
                None => None,
                Some(group) => {
                    let index = group
                        .parse::<usize>()
                        .ok()
                        .or_else(|| re.capture_names().position(|n| n == Some(group.as_str())));
                    match index {
                        Some(i) if i > 0 && i < re.captures_len() => Some(i),
                        _ => {
                            return Err(rule_error(
                                name,
                                format!("`group` {group:?} is not a capture group of the pattern"),
                            ));
                        }
                    }
                }
            };
            if matches!(
                cfg.validate,
                Some(
                    Validator::SecretParam
                        | Validator::SecretAssignment
                        | Validator::SecretElement
                        | Validator::SecretFlag
                        | Validator::RandomAssignment
                        | Validator::EnvName
                )
            ) && re.capture_names().all(|n| n != Some("name"))
            {
                return Err(rule_error(
                    name,
                    "this `validate` needs a capture group `name`",
                ));
            }
            Matcher::Regex {
                re,
                group,
                validator: cfg.validate,
            }
        }
        RuleKind::Literal => {
            unexpected("pattern", cfg.pattern.is_some())?;
            unexpected("keys", !cfg.keys.is_empty())?;
            unexpected("detector", cfg.detector.is_some())?;
            unexpected("group", cfg.group.is_some())?;
            unexpected("validate", cfg.validate.is_some())?;
            if cfg.values.is_empty() {
                return Err(rule_error(
                    name,
                    "kind `literal` needs a non-empty `values` list",
                ));
            }
            if cfg.values.iter().any(String::is_empty) {
                return Err(rule_error(name, "`values` may not contain an empty string"));
            }
            let insensitive = case_insensitive.unwrap_or(true);
            let mut patterns: Vec<String> = Vec::new();
            for value in &cfg.values {
                let mut variants = vec![value.clone()];
                if insensitive && !value.is_ascii() {
                    variants.push(value.to_lowercase());
                    variants.push(value.to_uppercase());
                }
                for v in variants {
                    if !patterns.contains(&v) {
                        patterns.push(v);
                    }
                }
            }
            let whole_word = cfg.whole_word.unwrap_or(true);
            // Whole words need every overlapping match (see `identity::select_matches`).
            let kind = if whole_word {
                MatchKind::Standard
            } else {
                MatchKind::LeftmostLongest
            };
            let ac = AhoCorasick::builder()
                .match_kind(kind)
                .ascii_case_insensitive(insensitive)
                .build(&patterns)
                .map_err(|err| rule_error(name, err.to_string()))?;
            Matcher::Literal { ac, whole_word }
        }
        RuleKind::Key => {
            unexpected("pattern", cfg.pattern.is_some())?;
            unexpected("values", !cfg.values.is_empty())?;
            unexpected("detector", cfg.detector.is_some())?;
            unexpected("triggers", !cfg.triggers.is_empty())?;
            Matcher::Key(KeyMatcher::new(name, &cfg.keys)?)
        }
        RuleKind::Detector => {
            unexpected("pattern", cfg.pattern.is_some())?;
            unexpected("values", !cfg.values.is_empty())?;
            unexpected("keys", !cfg.keys.is_empty())?;
            let Some(detector) = cfg.detector else {
                return Err(rule_error(name, "kind `detector` needs a `detector`"));
            };
            Matcher::Detector(detector)
        }
    };
    let mut requires = ByteSet::default();
    for req in &cfg.requires {
        match req.as_bytes() {
            [b] if b.is_ascii() => {
                requires.insert(*b);
            }
            _ => {
                return Err(rule_error(
                    name,
                    format!("`requires` entries must be single ASCII characters, not {req:?}"),
                ));
            }
        }
    }
    if cfg.triggers.iter().any(String::is_empty) {
        return Err(rule_error(
            name,
            "`triggers` may not contain an empty string",
        ));
    }
    let never_alone = matches!(matcher, Matcher::Key(_))
        || (matches!(matcher, Matcher::Detector(_)) && cfg.triggers.is_empty());
    Ok(CompiledRule {
        name: name.to_owned(),
        redaction: cfg.redaction.clone(),
        matcher,
        prefilter: PrefilterSpec {
            triggers: cfg.triggers.clone(),
            requires,
            min_digits: cfg.min_digits,
            validator: cfg.validate,
            never_alone,
        },
    })
}

fn kind_name(kind: RuleKind) -> &'static str {
    match kind {
        RuleKind::Regex => "regex",
        RuleKind::Literal => "literal",
        RuleKind::Key => "key",
        RuleKind::Detector => "detector",
    }
}

/// The prefilter over all rules of a scrubber.
#[derive(Debug, Default)]
pub(crate) struct TriggerTable {
    ac: Option<AhoCorasick>,
    lit_masks: Vec<u128>,
    lit_rules: u128,
    byte_masks: Vec<(u8, u128)>,
    always: u128,
    constrained: Vec<(usize, ByteSet, usize, Option<Validator>)>,
}

fn bit(index: usize) -> u128 {
    if index < MASK_BITS { 1u128 << index } else { 0 }
}

impl TriggerTable {
    /// Builds the table from each rule's prefilter (by rule index) and extra literals that
    /// trigger a rule (identity names, environment values, home directories).
    pub(crate) fn build<'a>(
        rules: impl Iterator<Item = (usize, &'a PrefilterSpec)>,
        extra: &[(String, usize)],
    ) -> Result<TriggerTable, BuildError> {
        let mut table = TriggerTable::default();
        let mut literals: Vec<String> = Vec::new();
        let mut lit_masks: Vec<u128> = Vec::new();
        let mut add_literal = |literal: &str, index: usize, literals: &mut Vec<String>| {
            let lower = literal.to_ascii_lowercase();
            match literals.iter().position(|l| *l == lower) {
                Some(i) => {
                    if let Some(mask) = lit_masks.get_mut(i) {
                        *mask |= bit(index);
                    }
                }
                None => {
                    literals.push(lower);
                    lit_masks.push(bit(index));
                }
            }
        };
        for (index, spec) in rules {
            if index >= MASK_BITS {
                continue;
            }
            if spec.triggers.is_empty() && !spec.never_alone {
                table.always |= bit(index);
            }
            for trigger in &spec.triggers {
                match trigger.as_bytes() {
                    [b] => {
                        for b in [b.to_ascii_lowercase(), b.to_ascii_uppercase()] {
                            match table.byte_masks.iter_mut().find(|(x, _)| *x == b) {
                                Some((_, mask)) => *mask |= bit(index),
                                None => table.byte_masks.push((b, bit(index))),
                            }
                        }
                    }
                    _ => add_literal(trigger, index, &mut literals),
                }
            }
            if spec.requires != ByteSet::default()
                || spec.min_digits > 0
                || spec.validator.is_some()
            {
                table
                    .constrained
                    .push((index, spec.requires, spec.min_digits, spec.validator));
            }
        }
        for (literal, index) in extra {
            if *index < MASK_BITS && !literal.is_empty() {
                add_literal(literal, *index, &mut literals);
            }
        }
        if !literals.is_empty() {
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&literals)
                .or_else(|_| {
                    AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .build(&literals)
                })
                .map_err(|err| rule_error("prefilter", err.to_string()))?;
            table.ac = Some(ac);
        }
        table.lit_rules = lit_masks.iter().fold(0, |acc, m| acc | m);
        table.lit_masks = lit_masks;
        Ok(table)
    }

    /// The rules (as bits by index) that may match `text`.
    pub(crate) fn mask(&self, text: &str, stats: &Stats) -> u128 {
        let mut mask = self.always;
        for (b, rules) in &self.byte_masks {
            if stats.present.contains(*b) {
                mask |= rules;
            }
        }
        if let Some(ac) = &self.ac
            && mask & self.lit_rules != self.lit_rules
        {
            for m in ac.find_overlapping_iter(text) {
                if let Some(rules) = self.lit_masks.get(m.pattern().as_usize()) {
                    mask |= rules;
                }
            }
        }
        for (index, requires, min_digits, validator) in &self.constrained {
            let b = bit(*index);
            if mask & b != 0
                && (!stats.present.contains_all(requires)
                    || stats.digits < *min_digits
                    || !precheck(*validator, stats))
            {
                mask &= !b;
            }
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefilter_masks() {
        let specs = [
            PrefilterSpec {
                triggers: vec!["@".into()],
                ..PrefilterSpec::default()
            },
            PrefilterSpec {
                triggers: vec!["://".into()],
                requires: {
                    let mut set = ByteSet::default();
                    set.insert(b'@');
                    set
                },
                ..PrefilterSpec::default()
            },
            PrefilterSpec {
                min_digits: 4,
                ..PrefilterSpec::default()
            },
            PrefilterSpec {
                never_alone: true,
                ..PrefilterSpec::default()
            },
        ];
        let table = TriggerTable::build(specs.iter().enumerate(), &[("Alice".into(), 3)]).unwrap();
        let mask = |t: &str| table.mask(t, &Stats::of(t));
        assert_eq!(mask("plain"), 0);
        assert_eq!(mask("a@b"), 0b0001);
        assert_eq!(mask("https://u:p@h"), 0b0011);
        assert_eq!(mask("https://h"), 0);
        assert_eq!(mask("1234"), 0b0100);
        assert_eq!(mask("hi ALICE"), 0b1000);
    }
}
