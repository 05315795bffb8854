//! The public API: building, errors, rule packs, redactions, map keys, reports, threads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use consentry_scrubbers::{
    BuildError, Redaction, Report, RuleConfig, RuleKind, RulePack, ScrubError, Scrubber,
    ScrubberBuilder, builtin_rules, hash_with_salt,
};
use serde_json::{Value, json};

fn assert_traits<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}

#[test]
fn types_are_shareable() {
    assert_traits::<Scrubber>();
    assert_traits::<ScrubberBuilder>();
    assert_traits::<Report>();
    assert_traits::<RulePack>();
    assert_traits::<BuildError>();
    assert_traits::<ScrubError>();
}

#[test]
fn debug_output_holds_no_identity_or_secret() {
    let builder = Scrubber::builder()
        .user("zorquenvel")
        .full_name("Zor Quenvel")
        .hostname("zq-box")
        .env_var("API_TOKEN", "tok-5e3cr3t-value")
        .salt(b"salty-salt");
    let scrubber = builder.clone().build().unwrap();
    for text in [format!("{builder:?}"), format!("{scrubber:?}")] {
        for secret in [
            "zorquenvel",
            "Quenvel",
            "zq-box",
            "tok-5e3cr3t-value",
            "salty",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
}

#[test]
fn scrubbers_work_across_threads() {
    let scrubber = Scrubber::builder().user("zorquenvel").build().unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let scrubber = scrubber.clone();
            std::thread::spawn(move || {
                let (text, _) = scrubber
                    .scrub_text(&format!("/home/zorquenvel/{i} mail{i}@example.com"))
                    .unwrap();
                text
            })
        })
        .collect();
    for (i, handle) in handles.into_iter().enumerate() {
        assert_eq!(handle.join().unwrap(), format!("~/{i} <email>"));
    }
}

#[test]
fn build_errors_name_the_rule() {
    let err = |builder: ScrubberBuilder| builder.build().unwrap_err().to_string();
    assert_eq!(
        err(Scrubber::builder().disable_rule("no-such-rule")),
        "cannot disable unknown rule `no-such-rule`"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::literal("email", ["x"]))),
        "rule `email` is defined twice"
    );
    assert!(
        err(Scrubber::builder().rule(RuleConfig::regex("bad", "(")))
            .starts_with("rule `bad`: invalid pattern: ")
    );
    assert!(
        err(Scrubber::builder().rule(RuleConfig::regex("big", r"\w{500}").with_size_limit(1000)))
            .starts_with("rule `big`: invalid pattern: ")
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::regex("huge", "x").with_size_limit(1 << 30))),
        "rule `huge`: `size_limit` 1073741824 is over the maximum 16777216"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::literal("empty", Vec::<String>::new()))),
        "rule `empty`: kind `literal` needs a non-empty `values` list"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::literal("blank", [""]))),
        "rule `blank`: `values` may not contain an empty string"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::key("nokeys", Vec::<String>::new()))),
        "rule `nokeys`: kind `key` needs a non-empty `keys` list"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::regex("grp", "a(b)").with_group("nope"))),
        "rule `grp`: `group` \"nope\" is not a capture group of the pattern"
    );
    assert_eq!(
        err(Scrubber::builder().rule(RuleConfig::literal("has space", ["x"]))),
        "rule `has space`: a rule name must be at most 64 characters without spaces"
    );
}

#[test]
fn pack_errors() {
    let err =
        RulePack::from_toml_str("[[rules]]\nname = \"a\"\nkind = \"regex\"\npatern = \"x\"\n")
            .unwrap_err();
    assert!(matches!(err, BuildError::Pack { format: "toml", .. }));
    assert!(err.to_string().contains("unknown field `patern`"), "{err}");
    let pack = RulePack::from_toml_str("[[rules]]\nname = \"a\"\nkind = \"regex\"\n").unwrap();
    assert_eq!(
        Scrubber::builder()
            .rule_pack(pack)
            .build()
            .unwrap_err()
            .to_string(),
        "rule `a`: kind `regex` needs a `pattern`"
    );
    let err = RulePack::from_json_str(r#"{"rules": [{"name": "a", "kind": "nope"}]}"#).unwrap_err();
    assert!(
        matches!(err, BuildError::Pack { format: "json", .. }),
        "{err}"
    );
    let pack = RulePack::from_toml_str(
        "[[rules]]\nname = \"a\"\nkind = \"literal\"\nvalues = [\"x\"]\npattern = \"y\"\n",
    )
    .unwrap();
    assert_eq!(
        Scrubber::builder()
            .rule_pack(pack)
            .build()
            .unwrap_err()
            .to_string(),
        "rule `a`: `pattern` does not apply to kind `literal`"
    );
}

#[test]
fn builtin_packs_round_trip_through_json() {
    let rules = builtin_rules();
    assert!(rules.len() >= 25);
    let json = serde_json::to_string(&json!({ "rules": rules })).unwrap();
    let pack = RulePack::from_json_str(&json).unwrap();
    assert_eq!(pack.rules(), rules);
    // A JSON pack compiles like a TOML one (renamed, since builtin names are taken).
    let renamed: Vec<Value> = serde_json::from_str::<Value>(&json).unwrap()["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] != "detector")
        .map(|r| {
            let mut r = r.clone();
            r["name"] = json!(format!("copy-of-{}", r["name"].as_str().unwrap()));
            r
        })
        .collect();
    let pack = RulePack::from_json_str(&json!({ "rules": renamed }).to_string()).unwrap();
    let scrubber = Scrubber::builder().rule_pack(pack).build().unwrap();
    assert!(scrubber.rule_names().any(|n| n == "copy-of-email"));
}

#[test]
fn crate_docs_list_every_builtin_rule() {
    let docs = include_str!("../src/lib.rs");
    let table_names: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("//! | `"))
        .filter_map(|rest| rest.split('`').next())
        .collect();
    let names: Vec<&str> = builtin_rules().iter().map(RuleConfig::name).collect();
    assert_eq!(
        table_names, names,
        "the rule table in lib.rs is out of date"
    );
    for rule in builtin_rules() {
        assert!(
            !rule.description().is_empty(),
            "{} has no description",
            rule.name()
        );
        if let Redaction::Placeholder(placeholder) = rule.redaction() {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("//! | `{}`", rule.name())))
                .unwrap();
            assert!(
                row.contains(&format!("`{placeholder}`")),
                "{}: placeholder {placeholder} not in its row",
                rule.name()
            );
        }
    }
}

#[test]
fn disabling_rules() {
    let scrubber = Scrubber::builder()
        .rule(RuleConfig::literal("codename", ["Nightingale"]))
        .disable_rule("email")
        .disable_rule("codename")
        .build()
        .unwrap();
    let (text, report) = scrubber
        .scrub_text("bob@example.com Nightingale 10.1.2.3")
        .unwrap();
    assert_eq!(text, "bob@example.com Nightingale <ip>");
    assert_eq!(report.count_for_rule("ipv4"), 1);
    assert!(
        !scrubber
            .rule_names()
            .any(|n| n == "email" || n == "codename")
    );
    let no_homes = Scrubber::builder()
        .user("alice")
        .disable_rule("home-path")
        .build()
        .unwrap();
    assert_eq!(
        no_homes.scrub_text("/home/alice/x").unwrap().0,
        "/home/<user>/x"
    );
}

#[test]
fn redactions() {
    let scrubber = Scrubber::builder()
        .salt(b"salt")
        .rule(RuleConfig::literal("masked", ["Nightingale"]).with_redaction(Redaction::Mask))
        .rule(RuleConfig::literal("removed", ["Heron"]).with_redaction(Redaction::Remove))
        .rule(RuleConfig::literal("hashed", ["Osprey"]).with_redaction(Redaction::Hash))
        .rule(RuleConfig::key("hashed-key", ["customer_id"]).with_redaction(Redaction::Hash))
        .build()
        .unwrap();
    let (text, _) = scrubber
        .scrub_text("Nightingale, Heron and Osprey")
        .unwrap();
    let hash = scrubber.hash("Osprey");
    assert_eq!(hash, hash_with_salt(b"salt", "Osprey"));
    assert_eq!(text, format!("***********,  and {hash}"));
    assert_eq!(scrubber.scrub_text(&text).unwrap().0, text);

    let mut event = json!({"customer_id": "c-42", "other": {"customerId": 42}});
    scrubber.scrub_value(&mut event).unwrap();
    assert_eq!(event["customer_id"], json!(scrubber.hash("c-42")));
    assert_eq!(event["other"]["customerId"], json!(0));
    let before = event.clone();
    assert!(scrubber.scrub_value(&mut event).unwrap().is_empty());
    assert_eq!(event, before);
}

#[test]
fn deny_keys_redact_whatever_they_hold() {
    let scrubber = Scrubber::builder().build().unwrap();
    let mut event = json!({
        "password": "hunter2",
        "Cookie": {"sid": "abc", "theme": "dark", "n": 7, "ok": true, "list": ["a", null, 3.5]},
        "X-Api-Key": 123456,
        "empty_password": "",
        "headers": [["Authorization", "Basic dXNlcjpwYXNz"], ["Accept", "text/html"]],
        "author": "Lewis Carroll",
        "token_count": 17,
    });
    let report = scrubber.scrub_value(&mut event).unwrap();
    assert_eq!(
        event,
        json!({
            "password": "<redacted>",
            "Cookie": {"sid": "<redacted>", "theme": "<redacted>", "n": 0, "ok": true, "list": ["<redacted>", null, 0]},
            "X-Api-Key": 0,
            "empty_password": "",
            "headers": [["Authorization", "<redacted>"], ["Accept", "text/html"]],
            "author": "Lewis Carroll",
            "token_count": 17,
        })
    );
    assert_eq!(report.count_for_rule("deny-key"), 8);
}

#[test]
fn renamed_keys_keep_the_map_size_and_settle() {
    let scrubber = Scrubber::builder().build().unwrap();
    let mut event = json!({
        "paths": ["/home/zorquen/a", "/home/velmir/b"],
        "by_user": {"zorquen": 1, "velmir": 2, "<user>": 3, "<user>#2": 4, "keep": 5},
    });
    let report = scrubber.scrub_value(&mut event).unwrap();
    let by_user = event["by_user"].as_object().unwrap();
    assert_eq!(by_user.len(), 5);
    let mut values: Vec<i64> = by_user.values().map(|v| v.as_i64().unwrap()).collect();
    values.sort_unstable();
    assert_eq!(values, [1, 2, 3, 4, 5]);
    assert!(
        by_user
            .keys()
            .all(|k| !k.contains("zorquen") && !k.contains("velmir"))
    );
    assert_eq!(report.count_for_rule("user-name"), 2);
    assert!(report.iter().any(|e| e.path == "by_user{key}"));
    let before = event.clone();
    assert!(scrubber.scrub_value(&mut event).unwrap().is_empty());
    assert_eq!(event, before);
}

#[test]
fn reports_hold_counts_and_paths_never_values() {
    let scrubber = Scrubber::builder().build().unwrap();
    let mut event = json!({
        "exception": {"values": [{"stacktrace": {"frames": [
            {"abs_path": "/home/zorquen/a.rs"}, {"abs_path": "/home/zorquen/b.rs"}
        ]}}]},
        "extra": {"/home/zorquen/c": true, "mail": "zq@example.com"},
    });
    let report = scrubber.scrub_value(&mut event).unwrap();
    let entries: Vec<(&str, &str, u64)> =
        report.iter().map(|e| (e.rule, e.path, e.count)).collect();
    assert_eq!(
        entries,
        [
            ("email", "extra.mail", 1),
            (
                "home-path",
                "exception.values[].stacktrace.frames[].abs_path",
                2
            ),
            ("home-path", "extra{key}", 1),
        ]
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("zorquen") && !json.contains("zq@"));
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let mut total = Report::new();
    total.merge(&report);
    total.merge(report.clone());
    assert_eq!(total.total(), 2 * report.total());
    assert!(total.to_string().starts_with("scrubbed 8 values\n"));
}

#[test]
fn rule_config_accessors() {
    let rule = RuleConfig::regex("x", "y")
        .with_description("d")
        .with_redaction(Redaction::Remove)
        .with_triggers(["y"]);
    assert_eq!(
        (rule.name(), rule.description(), rule.kind()),
        ("x", "d", RuleKind::Regex)
    );
    assert_eq!(rule.redaction(), &Redaction::Remove);
    let toml = "[[rules]]\nname = \"x\"\nkind = \"regex\"\npattern = \"y\"\ntriggers = [\"y\"]\ndescription = \"d\"\nredaction = \"remove\"\n";
    assert_eq!(
        RulePack::from_toml_str(toml).unwrap(),
        RulePack::new().with_rule(rule)
    );
}

#[test]
fn environment_identities() {
    let scrubber = Scrubber::builder()
        .env_vars(
            [
                ("USER", "zorquen"),
                ("HOSTNAME", "zq-workstation"),
                ("HOME", "/srv/homes/zorquen"),
                ("SESSION_SECRET", "s3ss10n-s3cr3t-value"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .build()
        .unwrap();
    let (text, _) = scrubber
        .scrub_text("zorquen@zq-workstation:/srv/homes/zorquen/x $ echo s3ss10n-s3cr3t-value")
        .unwrap();
    assert_eq!(text, "<user>@<hostname>:~/x $ echo <redacted>");
}
