//! The builtin rules: rule packs under `rules/`, embedded in the binary, parsed and compiled
//! once per process.

use std::sync::LazyLock;

use crate::compile::{CompiledRule, compile_rule};
use crate::config::{RuleConfig, RulePack};
use crate::error::BuildError;

/// The builtin packs, in the order their rules run.
const PACKS: &[(&str, &str)] = &[
    ("rules/secrets.toml", include_str!("../rules/secrets.toml")),
    (
        "rules/personal.toml",
        include_str!("../rules/personal.toml"),
    ),
    (
        "rules/identity.toml",
        include_str!("../rules/identity.toml"),
    ),
    ("rules/keys.toml", include_str!("../rules/keys.toml")),
];

fn parse() -> Result<Vec<RuleConfig>, BuildError> {
    let mut rules = Vec::new();
    for (file, text) in PACKS {
        let pack = RulePack::from_toml_str(text).map_err(|err| BuildError::Pack {
            format: "toml",
            message: format!("{file}: {err}"),
        })?;
        rules.extend(pack.into_rules());
    }
    Ok(rules)
}

static CONFIGS: LazyLock<Result<Vec<RuleConfig>, BuildError>> = LazyLock::new(parse);

/// The compiled builtin rules, shared by every scrubber of the process.
#[derive(Debug)]
pub(crate) struct Builtins {
    pub(crate) rules: Vec<CompiledRule>,
}

static COMPILED: LazyLock<Result<Builtins, BuildError>> = LazyLock::new(|| {
    let configs = CONFIGS.as_ref().map_err(Clone::clone)?;
    let rules = configs
        .iter()
        .map(|cfg| compile_rule(cfg, true))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Builtins { rules })
});

/// The compiled builtin rules, compiled on first use.
pub(crate) fn compiled() -> Result<&'static Builtins, BuildError> {
    COMPILED.as_ref().map_err(Clone::clone)
}

/// The builtin rules in the order they run, as configured in the packs under `rules/`.
///
/// Names are stable identifiers: use them with
/// [`ScrubberBuilder::disable_rule`](crate::ScrubberBuilder::disable_rule) and find them in
/// [`Report`](crate::Report)s.
///
/// ```
/// let names: Vec<&str> = consentry_scrubbers::builtin_rules().iter().map(|r| r.name()).collect();
/// assert!(names.contains(&"email"));
/// assert!(names.contains(&"home-path"));
/// ```
pub fn builtin_rules() -> &'static [RuleConfig] {
    match &*CONFIGS {
        Ok(rules) => rules,
        Err(_) => &[],
    }
}
