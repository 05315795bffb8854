//! A snapshot of the environment variables that steer consentry.
//!
//! The consent decision is a pure function of this snapshot, the settings and the config, so
//! tests build snapshots from pairs instead of mutating the process environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

/// CI systems and the variable that reveals each, checked in this order.
pub(crate) const CI_VARS: &[(&str, &str)] = &[
    ("GITHUB_ACTIONS", "GitHub Actions"),
    ("GITLAB_CI", "GitLab CI"),
    ("BUILDKITE", "Buildkite"),
    ("CIRCLECI", "CircleCI"),
    ("JENKINS_URL", "Jenkins"),
    ("TF_BUILD", "Azure Pipelines"),
    ("TRAVIS", "Travis CI"),
    ("TEAMCITY_VERSION", "TeamCity"),
    ("BITBUCKET_BUILD_NUMBER", "Bitbucket Pipelines"),
    ("APPVEYOR", "AppVeyor"),
    ("CODEBUILD_BUILD_ID", "AWS CodeBuild"),
    ("DRONE", "Drone"),
    ("CI", "generic CI"),
];

/// Distributed-training rank variables: only rank 0 reports (as Ultralytics does).
pub(crate) const RANK_VARS: &[&str] =
    &["RANK", "LOCAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK"];

/// The environment variables consentry reads, captured once, as bytes: a value that is not
/// UTF-8 is still set (`DO_NOT_TRACK=$'\xff'` says no).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvSnapshot {
    vars: BTreeMap<String, OsString>,
}

/// The placeholder [`EnvSnapshot::get`] returns for a value that is not UTF-8: set,
/// non-empty, and none of the documented words, so each rule reads it as its "other value"
/// (off for `<APP>_TELEMETRY` and `DO_NOT_TRACK`, set for CI).
pub(crate) const NOT_UTF8: &str = "<not UTF-8>";

impl EnvSnapshot {
    /// Reads the variables that matter for the app whose variables start with `prefix`.
    pub(crate) fn from_process(prefix: &str) -> Self {
        let mut names: Vec<String> = vec!["DO_NOT_TRACK".into()];
        names.extend(CI_VARS.iter().map(|(name, _)| (*name).to_owned()));
        names.extend(RANK_VARS.iter().map(|name| (*name).to_owned()));
        for suffix in ["TELEMETRY", "TELEMETRY_DEBUG", "CONFIG_DIR", "DATA_DIR"] {
            names.push(format!("{prefix}_{suffix}"));
        }
        Self::from_pairs(
            names
                .into_iter()
                .filter_map(|name| std::env::var_os(&name).map(|value| (name, value))),
        )
    }

    /// A snapshot made of the given pairs (tests, and callers that filter the environment).
    pub(crate) fn from_pairs<K: Into<String>, V: Into<OsString>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        EnvSnapshot {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`, if set; [`NOT_UTF8`] for a value that is not UTF-8.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(|v| v.to_str().unwrap_or(NOT_UTF8))
    }

    /// The value of `name` as the OS gave it (directories).
    pub(crate) fn get_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(name).map(OsString::as_os_str)
    }

    /// The CI variable that is set, and the vendor it names, if any.
    pub(crate) fn ci(&self) -> Option<(&'static str, &'static str)> {
        CI_VARS.iter().copied().find(|(name, _)| {
            self.get(name)
                .is_some_and(|value| !is_false_like(value) && !value.is_empty())
        })
    }

    /// The first non-zero distributed rank, as `(variable, value)`.
    pub(crate) fn nonzero_rank(&self) -> Option<(&'static str, i64)> {
        RANK_VARS.iter().copied().find_map(|name| {
            let rank = self.get(name)?.trim().parse::<i64>().ok()?;
            (rank != 0 && rank != -1).then_some((name, rank))
        })
    }

    /// Whether `<APP>_TELEMETRY_DEBUG` asks for debug mode (print payloads, send nothing).
    pub(crate) fn debug(&self, prefix: &str) -> bool {
        self.get(&format!("{prefix}_TELEMETRY_DEBUG"))
            .is_some_and(|v| !v.is_empty() && !is_false_like(v))
    }
}

/// `0`, `false`, `no`, `off` in any case.
pub(crate) fn is_false_like(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

/// `1`, `true`, `yes`, `on` in any case.
pub(crate) fn is_true_like(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_false_values_are_not_ci() {
        assert_eq!(EnvSnapshot::from_pairs([("CI", "false")]).ci(), None);
        assert_eq!(EnvSnapshot::from_pairs([("CI", "")]).ci(), None);
        assert_eq!(
            EnvSnapshot::from_pairs([("CI", "true"), ("GITHUB_ACTIONS", "true")]).ci(),
            Some(("GITHUB_ACTIONS", "GitHub Actions"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn values_that_are_not_utf8_are_set() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![0xff]);
        let env = EnvSnapshot::from_pairs([("CI", bad.clone()), ("X_DATA_DIR", bad.clone())]);
        assert!(env.ci().is_some());
        assert_eq!(env.get("X_DATA_DIR"), Some(NOT_UTF8));
        assert_eq!(env.get_os("X_DATA_DIR"), Some(bad.as_os_str()));
    }

    #[test]
    fn rank_zero_and_minus_one_report() {
        assert_eq!(
            EnvSnapshot::from_pairs([("RANK", "0")]).nonzero_rank(),
            None
        );
        assert_eq!(
            EnvSnapshot::from_pairs([("RANK", "-1")]).nonzero_rank(),
            None
        );
        assert_eq!(
            EnvSnapshot::from_pairs([("RANK", "x")]).nonzero_rank(),
            None
        );
        assert_eq!(
            EnvSnapshot::from_pairs([("LOCAL_RANK", "0"), ("SLURM_PROCID", "2")]).nonzero_rank(),
            Some(("SLURM_PROCID", 2))
        );
    }
}
