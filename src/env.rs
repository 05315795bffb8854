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
    /// A project-level opt-out file (`.<app>-telemetry` saying `off`) at the root of the
    /// repository holding the working directory.
    project_opt_out: Option<std::path::PathBuf>,
}

/// The suffix of the variable that carries a parent process's "no" for one kind
/// (`MYAPP_TELEMETRY_OFF=usage`): it only ever turns a kind off, never on.
pub(crate) const INHERITED_NO: &str = "TELEMETRY_OFF";

/// The most directories walked up from the working directory to find a repository root.
const PROJECT_WALK_MAX: usize = 64;

/// The project-level opt-out file of `app` that applies here: walks up from the working
/// directory to the first directory holding `.git` (a directory, or a file for worktrees
/// and submodules) and returns `<root>/.<app>-telemetry` unless its first line that is not
/// blank or a `#` comment says `on` (`1`, `true`, `yes` too). Committed to a repository, it
/// turns reporting off for everyone who runs the app there. It fails closed: a file that is
/// not a regular file (a link, a FIFO), cannot be read, is larger than 64 KiB or says
/// anything else is an opt-out too. A leading byte-order mark is ignored.
pub(crate) fn project_opt_out(app: &str) -> Option<std::path::PathBuf> {
    project_opt_out_from(&std::env::current_dir().ok()?, app)
}

fn project_opt_out_from(cwd: &std::path::Path, app: &str) -> Option<std::path::PathBuf> {
    let root = cwd
        .ancestors()
        .take(PROJECT_WALK_MAX)
        .find(|dir| std::fs::symlink_metadata(dir.join(".git")).is_ok())?;
    let file = root.join(format!(".{app}-telemetry"));
    std::fs::symlink_metadata(&file).ok()?;
    let Ok(bytes) = crate::fsx::read_capped(&file, 64 * 1024) else {
        return Some(file);
    };
    let text = String::from_utf8_lossy(&bytes);
    let says_on = text
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}'))
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|first| is_true_like(first) || first.eq_ignore_ascii_case("on"));
    (!says_on).then_some(file)
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
        for suffix in [
            "TELEMETRY",
            "TELEMETRY_DEBUG",
            INHERITED_NO,
            "CONFIG_DIR",
            "DATA_DIR",
        ] {
            names.push(format!("{prefix}_{suffix}"));
        }
        Self::from_pairs(
            names
                .into_iter()
                .filter_map(|name| std::env::var_os(&name).map(|value| (name, value))),
        )
    }

    /// [`EnvSnapshot::from_process`] for `app`, with its project-level opt-out file and,
    /// for a member of a consent group, the group's inherited "no" (`<GROUP>_TELEMETRY_OFF`).
    pub(crate) fn for_app(app: &str, prefix: &str, group_prefix: Option<&str>) -> Self {
        let mut env = Self::from_process(prefix);
        if let Some(group) = group_prefix {
            let name = format!("{group}_{INHERITED_NO}");
            if let Some(value) = std::env::var_os(&name) {
                env.vars.insert(name, value);
            }
        }
        env.project_opt_out = project_opt_out(app);
        env
    }

    /// The inherited "no"s (`<PREFIX>_TELEMETRY_OFF=crash,usage`), as `(name, value)`.
    pub(crate) fn inherited_no(&self) -> impl Iterator<Item = (&str, &str)> {
        let suffix = format!("_{INHERITED_NO}");
        self.vars
            .keys()
            .filter(move |name| name.ends_with(&suffix))
            .filter_map(|name| Some((name.as_str(), self.get(name)?)))
    }

    /// The project-level opt-out file that applies, if any.
    pub(crate) fn project_opt_out(&self) -> Option<&std::path::Path> {
        self.project_opt_out.as_deref()
    }

    /// The same snapshot with a project-level opt-out file (tests).
    #[cfg(test)]
    pub(crate) fn with_project_opt_out(mut self, file: impl Into<std::path::PathBuf>) -> Self {
        self.project_opt_out = Some(file.into());
        self
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
            project_opt_out: None,
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
    fn the_project_file_is_found_at_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let cwd = root.join("a/b");
        let none = project_opt_out_from(&cwd, "myapp");
        std::fs::write(
            root.join(".myapp-telemetry"),
            "# telemetry for this repo\noff\n",
        )
        .unwrap();
        let found = project_opt_out_from(&cwd, "myapp");
        std::fs::write(root.join(".myapp-telemetry"), "on\n").unwrap();
        let on = project_opt_out_from(&cwd, "myapp");
        assert_eq!(none, None);
        assert_eq!(found, Some(root.join(".myapp-telemetry")));
        assert_eq!(on, None);
        // It fails closed: what is not a clear "on" is an opt-out.
        let file = root.join(".myapp-telemetry");
        let opt_out = |content: &[u8]| {
            std::fs::write(&file, content).unwrap();
            project_opt_out_from(&cwd, "myapp")
        };
        assert!(opt_out("\u{feff}off\n".as_bytes()).is_some(), "a BOM");
        assert!(
            opt_out("\u{feff}on\n".as_bytes()).is_none(),
            "a BOM before on"
        );
        assert!(opt_out(b"of\n").is_some(), "a typo");
        assert!(opt_out(b"").is_some(), "an empty file");
        let long = format!("{}\noff\n", "# a long header\n".repeat(200));
        assert!(opt_out(long.as_bytes()).is_some(), "past 1 KiB");
        assert!(
            opt_out(&vec![b'#'; 100 * 1024]).is_some(),
            "too large to read"
        );
        std::fs::remove_file(&file).unwrap();
        #[cfg(unix)]
        {
            std::fs::write(root.join("target"), "on\n").unwrap();
            std::os::unix::fs::symlink(root.join("target"), &file).unwrap();
            assert!(
                project_opt_out_from(&cwd, "myapp").is_some(),
                "a link is not followed, and counts as off"
            );
        }
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
