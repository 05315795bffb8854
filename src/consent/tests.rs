//! The consent matrix, one row per case: environment, settings, policy -> decision.

use super::*;
use crate::settings::{Consent, Mode};

/// Settings states a row can start from.
#[derive(Clone, Copy)]
enum S {
    /// Fresh file: undecided, notice not shown.
    Fresh,
    /// Consent given with the CLI.
    Granted,
    /// Consent given at the prompt.
    GrantedPrompt,
    /// Declined with the CLI (`disable`): sync=false.
    Declined,
    /// Consent given, then `sync=false` set by hand in the file.
    GrantedSyncOff,
    /// Consent given, crash reports off.
    GrantedCrashOff,
    /// Consent given, usage off.
    GrantedUsageOff,
    /// Undecided, usage off (for "can still ask for crash reports").
    FreshUsageOff,
    /// Undecided, both kinds off.
    FreshBothOff,
    /// Opt-out notice already shown.
    NoticeShown,
    /// Opt-out default recorded after the notice.
    DefaultGranted,
    /// The settings directory is unusable.
    Unavailable,
}

fn settings(s: S) -> Result<SettingsData, &'static str> {
    let mut d = SettingsData::default();
    let given = |via| Consent {
        decided: true,
        granted: true,
        at: Some("2026-11-20T10:00:00Z".into()),
        via: Some(via),
        was_granted: true,
    };
    match s {
        S::Fresh => {}
        S::Granted => d.consent = given(ConsentSource::Cli),
        S::GrantedPrompt => d.consent = given(ConsentSource::Prompt),
        S::Declined => {
            d.sync = false;
            d.consent = Consent {
                granted: false,
                ..given(ConsentSource::Cli)
            };
        }
        S::GrantedSyncOff => {
            d.consent = given(ConsentSource::Cli);
            d.sync = false;
        }
        S::GrantedCrashOff => {
            d.consent = given(ConsentSource::Cli);
            d.crash_reports = Mode::Off;
        }
        S::GrantedUsageOff => {
            d.consent = given(ConsentSource::Cli);
            d.usage = Mode::Off;
        }
        S::FreshUsageOff => d.usage = Mode::Off,
        S::FreshBothOff => {
            d.usage = Mode::Off;
            d.crash_reports = Mode::Off;
        }
        S::NoticeShown => d.notice_shown_at = Some("2026-11-19T08:00:00Z".into()),
        S::DefaultGranted => {
            d.notice_shown_at = Some("2026-11-19T08:00:00Z".into());
            d.consent = given(ConsentSource::Default);
        }
        S::Unavailable => return Err("cannot create /nope/settings.json: read-only file system"),
    }
    Ok(d)
}

const IN: Policy = Policy::OptIn;
const OUT: Policy = Policy::OptOut;

/// `(env, settings, policy, allow_ci, interactive) -> (crash, usage, reason fragment, next)`.
/// The reason fragment is checked against the crash reason when crash is the kind that is
/// off (or both are on), else against the usage reason.
/// One row of the matrix.
type Row = (
    &'static [(&'static str, &'static str)],
    S,
    Policy,
    bool,
    bool,
    bool,
    bool,
    &'static str,
    NextStep,
);

#[rustfmt::skip]
fn rows() -> Vec<Row> {
    use NextStep::*;
    vec![
        // Consent recorded, nothing in the environment.
        (&[], S::Granted, IN, false, false, true, true, "enabled: consent given with 'myapp telemetry enable' on 2026-11-20", None),
        (&[], S::GrantedPrompt, IN, false, false, true, true, "enabled: consent given at the prompt on 2026-11-20", None),
        (&[], S::Granted, OUT, false, false, true, true, "enabled: consent given with", None),
        // <APP>_TELEMETRY, every spelling of no.
        (&[("MYAPP_TELEMETRY", "0")], S::Granted, IN, false, false, false, false, "disabled by MYAPP_TELEMETRY=0", None),
        (&[("MYAPP_TELEMETRY", "false")], S::Granted, IN, false, false, false, false, "disabled by MYAPP_TELEMETRY=false", None),
        (&[("MYAPP_TELEMETRY", "FALSE")], S::Granted, IN, false, false, false, false, "disabled by MYAPP_TELEMETRY=FALSE", None),
        (&[("MYAPP_TELEMETRY", "off")], S::Granted, IN, false, false, false, false, "disabled by MYAPP_TELEMETRY=off", None),
        (&[("MYAPP_TELEMETRY", "no")], S::Granted, OUT, false, false, false, false, "disabled by MYAPP_TELEMETRY=no", None),
        (&[("MYAPP_TELEMETRY", "No")], S::NoticeShown, OUT, false, false, false, false, "disabled by MYAPP_TELEMETRY=No", None),
        (&[("MYAPP_TELEMETRY", "maybe")], S::Granted, IN, false, false, false, false, "unrecognised value MYAPP_TELEMETRY=maybe", None),
        (&[("MYAPP_TELEMETRY", "")], S::Granted, IN, false, false, true, true, "enabled: consent given", None),
        // <APP>_TELEMETRY=crash: crash reports only.
        (&[("MYAPP_TELEMETRY", "crash")], S::Granted, IN, false, false, true, false, "disabled by MYAPP_TELEMETRY=crash (crash reports only)", None),
        (&[("MYAPP_TELEMETRY", "crash")], S::Fresh, IN, false, false, true, false, "crash reports only", None),
        (&[("MYAPP_TELEMETRY", "crash")], S::Declined, IN, false, false, false, false, "disabled by sync=false", None),
        // <APP>_TELEMETRY=1 is consent, but never beats a no.
        (&[("MYAPP_TELEMETRY", "1")], S::Fresh, IN, false, false, true, true, "enabled by MYAPP_TELEMETRY=1", None),
        (&[("MYAPP_TELEMETRY", "yes")], S::Fresh, OUT, false, false, true, true, "enabled by MYAPP_TELEMETRY=yes", None),
        (&[("MYAPP_TELEMETRY", "1")], S::Declined, IN, false, false, false, false, "disabled by sync=false", None),
        (&[("MYAPP_TELEMETRY", "1"), ("DO_NOT_TRACK", "1")], S::Fresh, IN, false, false, false, false, "disabled by DO_NOT_TRACK=1", None),
        (&[("MYAPP_TELEMETRY", "1"), ("CI", "true")], S::Fresh, IN, false, false, false, false, "disabled: CI detected (CI, generic CI)", None),
        // Another app's variable does nothing.
        (&[("OTHER_TELEMETRY", "0")], S::Granted, IN, false, false, true, true, "enabled", None),
        // DO_NOT_TRACK: anything but empty, 0 or false is a no.
        (&[("DO_NOT_TRACK", "1")], S::Granted, IN, false, false, false, false, "disabled by DO_NOT_TRACK=1", None),
        (&[("DO_NOT_TRACK", "true")], S::Granted, IN, false, false, false, false, "disabled by DO_NOT_TRACK=true", None),
        (&[("DO_NOT_TRACK", "yes")], S::NoticeShown, OUT, false, false, false, false, "disabled by DO_NOT_TRACK=yes", None),
        (&[("DO_NOT_TRACK", "anything")], S::Granted, IN, false, false, false, false, "disabled by DO_NOT_TRACK=anything", None),
        (&[("DO_NOT_TRACK", "0")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("DO_NOT_TRACK", "false")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("DO_NOT_TRACK", "FALSE")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("DO_NOT_TRACK", "")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("DO_NOT_TRACK", "1")], S::Fresh, IN, false, true, false, false, "disabled by DO_NOT_TRACK=1", None),
        (&[("DO_NOT_TRACK", "1")], S::Fresh, OUT, false, false, false, false, "disabled by DO_NOT_TRACK=1", None),
        // Settings values.
        (&[], S::Declined, IN, false, false, false, false, "disabled by sync=false in the settings (declined with 'myapp telemetry disable' on 2026-11-20)", None),
        (&[], S::Declined, OUT, false, false, false, false, "disabled by sync=false", None),
        (&[], S::GrantedSyncOff, IN, false, false, false, false, "disabled by sync=false in the settings", None),
        (&[], S::GrantedCrashOff, IN, false, false, false, true, "disabled by crash_reports=false in the settings", None),
        (&[], S::GrantedUsageOff, IN, false, false, true, false, "disabled by usage=false in the settings", None),
        (&[], S::Unavailable, IN, false, true, false, false, "consent cannot be recorded (cannot create /nope/settings.json: read-only file system)", None),
        (&[], S::Unavailable, OUT, false, false, false, false, "consent cannot be recorded", None),
        (&[("MYAPP_TELEMETRY", "1")], S::Unavailable, IN, false, false, false, false, "consent cannot be recorded", None),
        // CI, every variable, and allow_ci.
        (&[("CI", "true")], S::Granted, IN, false, false, false, false, "disabled: CI detected (CI, generic CI)", None),
        (&[("CI", "1")], S::NoticeShown, OUT, false, false, false, false, "disabled: CI detected", None),
        (&[("CI", "false")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("GITHUB_ACTIONS", "true")], S::Granted, IN, false, false, false, false, "disabled: CI detected (GITHUB_ACTIONS, GitHub Actions)", None),
        (&[("GITLAB_CI", "true")], S::Granted, IN, false, false, false, false, "(GITLAB_CI, GitLab CI)", None),
        (&[("BUILDKITE", "true")], S::Granted, IN, false, false, false, false, "(BUILDKITE, Buildkite)", None),
        (&[("CIRCLECI", "true")], S::Granted, IN, false, false, false, false, "(CIRCLECI, CircleCI)", None),
        (&[("JENKINS_URL", "http://ci.example/")], S::Granted, IN, false, false, false, false, "(JENKINS_URL, Jenkins)", None),
        (&[("TF_BUILD", "True")], S::Granted, IN, false, false, false, false, "(TF_BUILD, Azure Pipelines)", None),
        (&[("TRAVIS", "true")], S::Granted, IN, false, false, false, false, "(TRAVIS, Travis CI)", None),
        (&[("TEAMCITY_VERSION", "2024.1")], S::Granted, IN, false, false, false, false, "(TEAMCITY_VERSION, TeamCity)", None),
        (&[("GITHUB_ACTIONS", "true")], S::Granted, IN, true, false, true, true, "enabled", None),
        (&[("CI", "true")], S::NoticeShown, OUT, true, false, true, true, "enabled: opt-out policy", None),
        (&[("CI", "true")], S::Fresh, IN, false, true, false, false, "CI detected", None),
        // Distributed rank: only rank 0 (or -1) reports.
        (&[("RANK", "1")], S::Granted, IN, false, false, false, false, "disabled: distributed rank RANK=1 (only rank 0 reports)", None),
        (&[("LOCAL_RANK", "3")], S::Granted, IN, false, false, false, false, "LOCAL_RANK=3", None),
        (&[("SLURM_PROCID", "7")], S::Granted, IN, false, false, false, false, "SLURM_PROCID=7", None),
        (&[("OMPI_COMM_WORLD_RANK", "2")], S::NoticeShown, OUT, false, false, false, false, "OMPI_COMM_WORLD_RANK=2", None),
        (&[("RANK", "0")], S::Granted, IN, false, false, true, true, "enabled", None),
        (&[("RANK", "-1")], S::Granted, IN, false, false, true, true, "enabled", None),
        // Opt-in, undecided: nothing is sent; ask only when someone is at the terminal.
        (&[], S::Fresh, IN, false, true, false, false, "disabled: no consent given yet (opt-in); 'myapp telemetry enable' turns it on", Ask),
        (&[], S::Fresh, IN, false, false, false, false, "no consent given yet", CannotAsk),
        (&[], S::FreshUsageOff, IN, false, true, false, false, "no consent given yet", Ask),
        (&[], S::FreshBothOff, IN, false, true, false, false, "disabled by crash_reports=false", None),
        // The opt-out default does not count as opt-in consent.
        (&[], S::DefaultGranted, IN, false, true, false, false, "no consent given yet", Ask),
        // Opt-out: the first run shows the notice and sends nothing.
        (&[], S::Fresh, OUT, false, false, false, false, "disabled for this run: first-run notice (opt-out)", Notice),
        (&[], S::Fresh, OUT, false, true, false, false, "first-run notice", Notice),
        (&[], S::NoticeShown, OUT, false, false, true, true, "enabled: opt-out policy, notice shown on 2026-11-19; 'myapp telemetry disable' turns it off", None),
        (&[], S::DefaultGranted, OUT, false, false, true, true, "enabled: opt-out policy, notice shown on 2026-11-19", None),
        (&[], S::GrantedCrashOff, OUT, false, false, false, true, "disabled by crash_reports=false", None),
    ]
}

#[test]
fn consent_matrix() {
    for (i, (env, s, policy, allow_ci, interactive, crash, usage, reason, next)) in
        rows().into_iter().enumerate()
    {
        let env = EnvSnapshot::from_pairs(env.iter().copied());
        let data = settings(s);
        let inputs = Inputs {
            prefix: "MYAPP",
            command: "myapp telemetry",
            env: &env,
            settings: data.as_ref().map_err(|e| *e),
            policy,
            allow_ci,
            interactive,
            notice_version: None,
        };
        let d = decide(&inputs);
        let row = format!("row {i}: env={env:?} policy={policy:?} -> {d:#?}");
        assert_eq!((d.crash, d.usage), (crash, usage), "{row}");
        let checked = if !d.crash || d.usage {
            &d.crash_reason
        } else {
            &d.usage_reason
        };
        assert!(
            checked.contains(reason),
            "{row}\nexpected reason containing {reason:?}"
        );
        assert_eq!(d.next, next, "{row}");
        // The first reason in each list is the one reported.
        assert_eq!(
            d.crash_reasons.first(),
            Some(&d.crash_reason).filter(|_| !d.crash),
            "{row}"
        );
    }
}

#[test]
fn every_no_is_listed() {
    let env = EnvSnapshot::from_pairs([("DO_NOT_TRACK", "1"), ("CI", "true"), ("RANK", "2")]);
    let data = settings(S::Declined).unwrap();
    let d = decide(&Inputs {
        prefix: "MYAPP",
        command: "myapp telemetry",
        env: &env,
        settings: Ok(&data),
        policy: IN,
        allow_ci: false,
        interactive: false,
        notice_version: None,
    });
    let all = d.crash_reasons.join("\n");
    for fragment in [
        "DO_NOT_TRACK=1",
        "sync=false",
        "CI detected",
        "RANK=2",
        "declined",
    ] {
        assert!(all.contains(fragment), "{all}");
    }
}

#[test]
fn answers() {
    for yes in ["y", "Y", "yes", " YES\n"] {
        assert!(is_yes(yes), "{yes:?}");
    }
    for no in ["", "\n", "n", "no", "nope", "yess", "sure"] {
        assert!(!is_yes(no), "{no:?}");
    }
}

#[test]
fn a_project_file_saying_off_beats_a_yes_and_is_named() {
    let env = EnvSnapshot::from_pairs([("MYAPP_TELEMETRY", "1")])
        .with_project_opt_out("/repo/.myapp-telemetry");
    let data = settings(S::Granted).unwrap();
    let d = decide(&Inputs {
        prefix: "MYAPP",
        command: "myapp telemetry",
        env: &env,
        settings: Ok(&data),
        policy: IN,
        allow_ci: false,
        interactive: true,
        notice_version: None,
    });
    assert!(d.is_off());
    assert!(
        d.crash_reason.contains("/repo/.myapp-telemetry"),
        "{}",
        d.crash_reason
    );
    assert!(!d.can_ask());
}

#[test]
fn children_inherit_a_no_but_not_an_open_question() {
    let decide_with = |pairs: &[(&str, &str)], s: S, interactive: bool| {
        let env = EnvSnapshot::from_pairs(pairs.iter().copied());
        let data = settings(s).unwrap();
        decide(&Inputs {
            prefix: "MYAPP",
            command: "myapp telemetry",
            env: &env,
            settings: Ok(&data),
            policy: IN,
            allow_ci: false,
            interactive,
            notice_version: None,
        })
    };
    let vars = |d: &Decision| child_vars(&["MYAPP".to_owned()], d);
    let no = decide_with(&[("DO_NOT_TRACK", "1")], S::Granted, false);
    assert_eq!(
        vars(&no),
        [
            ("MYAPP_TELEMETRY".to_owned(), "0".to_owned()),
            ("DO_NOT_TRACK".to_owned(), "1".to_owned())
        ]
    );
    assert_eq!(vars(&decide_with(&[], S::Declined, false)).len(), 2);
    assert!(vars(&decide_with(&[], S::Granted, false)).is_empty());
    assert!(
        vars(&decide_with(&[], S::Fresh, true)).is_empty(),
        "undecided"
    );
    assert!(
        vars(&decide_with(&[], S::Fresh, false)).is_empty(),
        "undecided"
    );
    // One kind off: a variable that only turns that kind off, for the app and its group.
    let partial = decide_with(&[], S::GrantedUsageOff, false);
    assert_eq!(
        vars(&partial),
        [("MYAPP_TELEMETRY_OFF".to_owned(), "usage".to_owned())]
    );
    assert_eq!(
        child_vars(&["MYAPP".to_owned(), "ACME".to_owned()], &partial),
        [
            ("MYAPP_TELEMETRY_OFF".to_owned(), "usage".to_owned()),
            ("ACME_TELEMETRY_OFF".to_owned(), "usage".to_owned())
        ]
    );
    // What the child then decides: the same no, and no "yes" it did not give itself.
    let child = decide_with(&[("MYAPP_TELEMETRY_OFF", "usage")], S::Fresh, false);
    assert!(!child.crash && !child.usage, "nothing granted: {child:?}");
    let child = decide_with(&[("MYAPP_TELEMETRY_OFF", "usage")], S::Granted, false);
    assert!(child.crash && !child.usage, "{child:?}");
    assert!(child.usage_reason.contains("inherited"), "{child:?}");
    let child = decide_with(&[("ACME_TELEMETRY_OFF", "crash")], S::Granted, false);
    assert!(!child.crash && child.usage, "{child:?}");
    // An unknown value turns both off.
    let child = decide_with(&[("MYAPP_TELEMETRY_OFF", "bogus")], S::Granted, false);
    assert!(!child.crash && !child.usage, "{child:?}");
    assert!(!child.can_ask(), "a parent's no is not a question");
    // Local mode is not sending: the child keeps it off.
    let mut local = decide_with(&[], S::Granted, false);
    local.crash_mode = Mode::Local;
    assert_eq!(
        vars(&local),
        [("MYAPP_TELEMETRY_OFF".to_owned(), "crash".to_owned())]
    );
    local.usage_mode = Mode::Local;
    assert_eq!(
        vars(&local),
        [("MYAPP_TELEMETRY_OFF".to_owned(), "crash,usage".to_owned())]
    );
    // A "no" given in this process (`disable` flips the switches, no rule is recorded) is
    // still passed on.
    let mut withdrawn = decide_with(&[], S::Granted, false);
    withdrawn.crash = false;
    withdrawn.usage = false;
    withdrawn.crash_reasons.clear();
    withdrawn.usage_reasons.clear();
    assert_eq!(vars(&withdrawn).len(), 2, "{withdrawn:?}");
}

#[test]
fn a_new_notice_version_needs_the_notice_again_and_never_turns_a_no_into_a_question() {
    let env = EnvSnapshot::default();
    let run = |s: S, policy: Policy, shown_under: Option<&str>| {
        let mut data = settings(s).unwrap();
        data.notice_version = shown_under.map(str::to_owned);
        decide(&Inputs {
            prefix: "MYAPP",
            command: "myapp telemetry",
            env: &env,
            settings: Ok(&data),
            policy,
            allow_ci: false,
            interactive: true,
            notice_version: Some("v2"),
        })
    };
    // The same version: on.
    assert!(run(S::Granted, IN, Some("v2")).crash);
    assert!(run(S::NoticeShown, OUT, Some("v2")).crash);
    // Files from before versions were recorded count as the current one.
    assert!(run(S::Granted, IN, None).crash);
    // A yes under another version: asked again (opt-in), the notice again (opt-out).
    let d = run(S::Granted, IN, Some("v1"));
    assert!(!d.crash && d.can_ask(), "{d:?}");
    let d = run(S::NoticeShown, OUT, Some("v1"));
    assert!(!d.crash && d.next == NextStep::Notice, "{d:?}");
    // A no stays a no, and is not asked about.
    let d = run(S::Declined, IN, Some("v1"));
    assert!(d.is_off() && !d.can_ask(), "{d:?}");
}

#[test]
fn the_notice_lists_the_catalog_and_its_version_follows_it() {
    let base = Config::new("myapp", "1.0").usage_sink(crate::Sink::json("https://u.example/v1"));
    let a = base.clone().usage_events(&["started", "exported"]);
    let b = base
        .clone()
        .usage_events(&["started", "exported", "deleted"]);
    assert!(disclosure(&a).contains("Usage events: started, exported"));
    assert!(disclosure(&a).contains("u.example"));
    assert_ne!(notice_version(&a), notice_version(&b));
    assert_eq!(notice_version(&a), notice_version(&a.clone()));
}

#[test]
fn a_notice_version_is_about_what_is_collected_not_who_asks() {
    let sink = crate::Sink::json("https://u.example/v1");
    let cli = Config::new("acme-cli", "1.0")
        .usage_sink(sink.clone())
        .usage_events(&["started"]);
    let lsp = Config::new("acme-lsp", "2.0")
        .usage_sink(sink)
        .usage_events(&["started"]);
    let daemon = Config::new("acme-daemon", "1.0");
    let v = |c: &Config| notice_version(c).unwrap();
    assert_eq!(v(&cli), v(&lsp), "the app's name is not part of it");
    assert!(
        covers(&v(&cli), &v(&daemon)),
        "no usage: the reports part is enough"
    );
    assert!(
        !covers(&v(&daemon), &v(&cli)),
        "a consent without usage does not cover usage"
    );
    let mut standalone = Config::new("acme-cli", "1.0");
    standalone.standalone = true;
    assert_eq!(notice_version(&standalone), None);
    // Reports kept on the machine (no DSN) and reports sent are two notices: the version
    // that adds a DSN is not covered by a consent to the first.
    let kept = Config::new("acme-cli", "1.0");
    let sent = kept.clone().dsn("https://key@o1.ingest.example/1");
    assert!(!covers(&v(&kept), &v(&sent)), "adding a DSN asks again");
    let elsewhere = kept.clone().dsn("https://key@other.example/2");
    assert_eq!(v(&sent), v(&elsewhere), "the host is not part of it");
}
