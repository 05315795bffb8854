//! Table tests, one line per case, all through [`check`]: what each builtin rule removes and
//! what it must leave alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::LazyLock;

use consentry_scrubbers::{Redaction, RuleConfig, Scrubber};

/// A scrubber for a running user `alice` (Alice Liddell) on `alice-laptop.example.com`, with
/// a few secrets in the environment.
static SCRUBBER: LazyLock<Scrubber> = LazyLock::new(|| {
    Scrubber::builder()
        .user("alice")
        .full_name("Alice Liddell")
        .hostname("alice-laptop.example.com")
        .home_dir("/home/alice")
        .env_vars(
            [
                ("GITHUB_TOKEN", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
                ("MY_SERVICE_PASSWORD", "Tr0ub4dor&3"),
                (
                    "DATABASE_URL",
                    "postgres://app:pg-Secret-77@db.internal:5432/app",
                ),
                ("XDG_SESSION_TYPE", "wayland"),
                ("XDG_SESSION_CLASS", "user"),
                ("RUST_LOG", "debug"),
                ("LANG", "en_US.UTF-8"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .salt(b"test salt")
        .build()
        .unwrap()
});

/// Scrubs `input` and checks the output is `expected`, that `rule` (and only when the text
/// changed) is in the report, and that scrubbing the output again changes nothing.
#[track_caller]
fn check(rule: &str, input: &str, expected: &str) {
    check_with(&SCRUBBER, rule, input, expected);
}

#[track_caller]
fn check_with(scrubber: &Scrubber, rule: &str, input: &str, expected: &str) {
    let (output, report) = scrubber.scrub_text(input).unwrap();
    assert_eq!(output, expected, "rule `{rule}` on {input:?}");
    let count = report.count_for_rule(rule);
    if input == expected {
        assert_eq!(
            count, 0,
            "rule `{rule}` reported a match on {input:?}:\n{report}"
        );
    } else {
        assert!(
            count > 0,
            "rule `{rule}` not in the report for {input:?}:\n{report}"
        );
    }
    let (again, _) = scrubber.scrub_text(&output).unwrap();
    assert_eq!(again, output, "not idempotent on {input:?}");
}

/// Checks that `input` comes out unchanged.
#[track_caller]
fn keep(input: &str) {
    let (output, report) = SCRUBBER.scrub_text(input).unwrap();
    assert_eq!(output, input, "changed by:\n{report}");
}

#[test]
fn home_path() {
    check("home-path", "/home/alice/src/x.rs", "~/src/x.rs");
    check("home-path", r"C:\Users\alice\x", r"~\x");
    check(
        "home-path",
        r"c:/users/Alice/AppData/app.log",
        "~/AppData/app.log",
    );
    check("home-path", r"C:\\Users\\alice\\x.rs", r"~\\x.rs");
    check("home-path", r"\\?\C:\Users\alice\x", r"~\x");
    check("home-path", "/Users/alice/Library/Logs", "~/Library/Logs");
    check("home-path", "/home/bob/x", "/home/<user>/x");
    check(
        "home-path",
        r"open \u002fhome\u002fjdoe\u002fx failed",
        r"open \u002fhome\u002f<user>\u002fx failed",
    );
    check(
        "home-path",
        r"open \u002fhome\u002falice\u002fx failed",
        r"open ~\u002fx failed",
    );
    check(
        "home-path",
        "/afs/cern.ch/user/j/jdoe/x",
        "/afs/cern.ch/user/j/<user>/x",
    );
    check("home-path", "/nfs/homes/jdoe/x", "/nfs/homes/<user>/x");
    check(
        "home-path",
        "cannot open ~mwilliams/notes",
        "cannot open ~<user>/notes",
    );
    check(
        "home-path",
        "cannot open ~alice/notes",
        "cannot open ~/notes",
    );
    check("home-path", "/Users/bob/x", "/Users/<user>/x");
    check("home-path", r"C:\Users\bob\x", r"C:\Users\<user>\x");
    check("home-path", r"D:\Users\bob\x", r"D:\Users\<user>\x");
    check(
        "home-path",
        r"C:\Users\Bob Smith\Documents\x",
        r"C:\Users\<user>\Documents\x",
    );
    check(
        "home-path",
        r"C:\Documents and Settings\bob\x",
        r"C:\Documents and Settings\<user>\x",
    );
    check("home-path", r"C:\\Users\\bob\\x", r"C:\\Users\\<user>\\x");
    check(
        "home-path",
        r"C:\\\\Users\\\\bob\\\\x",
        r"C:\\\\Users\\\\<user>\\\\x",
    );
    check("home-path", r"\\?\C:\Users\bob\x", r"\\?\C:\Users\<user>\x");
    check("home-path", "/mnt/c/Users/bob", "/mnt/c/Users/<user>");
    check("home-path", "/mnt/c/Users/alice/x", "/mnt/c/Users/<user>/x");
    check("home-path", "/c/Users/bob/x", "/c/Users/<user>/x");
    check(
        "home-path",
        r"\\wsl$\Ubuntu\home\bob\x",
        r"\\wsl$\Ubuntu\home\<user>\x",
    );
    check(
        "home-path",
        r"\\wsl.localhost\Ubuntu-22.04\home\alice\x",
        r"~\x",
    );
    check("home-path", "file:///home/bob/x", "file:///home/<user>/x");
    check(
        "home-path",
        "file:///C:/Users/bob/x",
        "file:///C:/Users/<user>/x",
    );
    check(
        "home-path",
        "file:///home/bob%20smith/x",
        "file:///home/<user>/x",
    );
    check(
        "home-path",
        "?path=%2Fhome%2Fbob%2Fx",
        "?path=%2Fhome%2F<user>%2Fx",
    );
    check(
        "home-path",
        "C%3A%5CUsers%5Cbob%5Cx",
        "C%3A%5CUsers%5C<user>%5Cx",
    );
    check("home-path", "/var/home/bob/x", "/var/home/<user>/x");
    check(
        "home-path",
        "cannot open /home/bob.",
        "cannot open /home/<user>.",
    );
    check("home-path", "HOME=/home/bob", "HOME=/home/<user>");
    check(
        "home-path",
        "/home/alice/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
        "~/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
    );
    // UNC shares of user folders.
    check(
        "home-path",
        r"\\fileserver\c$\Users\dave\x",
        r"\\<hostname>\c$\Users\<user>\x",
    );
    check(
        "home-path",
        r"\\server\Users\bob\x",
        r"\\<hostname>\Users\<user>\x",
    );
    check(
        "home-path",
        r"\\server\home\bob\x",
        r"\\<hostname>\home\<user>\x",
    );
    check(
        "home-path",
        "//server/Users/bob/x",
        "//<hostname>/Users/<user>/x",
    );
    check(
        "home-path",
        "file://server/Users/bob",
        "file://<hostname>/Users/<user>",
    );
    check(
        "home-path",
        "file://nas7/home/bob/x.rs",
        "file://<hostname>/home/<user>/x.rs",
    );
    check(
        "home-path",
        "file://localhost/home/bob/x.rs",
        "file://localhost/home/<user>/x.rs",
    );
    check(
        "home-path",
        r"\\?\UNC\nas\Users\bob\x",
        r"\\?\UNC\<hostname>\Users\<user>\x",
    );
    check(
        "home-path",
        r"\\server\Users\alice\x",
        r"\\<hostname>\Users\<user>\x",
    );
    check(
        "home-path",
        "https://example.com/Users/bob/x",
        "https://example.com/Users/bob/x",
    );
    check(
        "home-path",
        r"D:\\projects\\home\\bob\\x",
        r"D:\\projects\\home\\bob\\x",
    );
    // Percent-encoded user names.
    check(
        "home-path",
        "file:///home/j%C3%B6rg/x.rs",
        "file:///home/<user>/x.rs",
    );
    check(
        "home-path",
        "file:///C:/Users/O%27Brien/x",
        "file:///C:/Users/<user>/x",
    );
    check(
        "home-path",
        "%2Fhome%2Fbob%20smith%2Fx",
        "%2Fhome%2F<user>%2Fx",
    );
    check("home-path", "%2Fhome%2Fbob%2Fx", "%2Fhome%2F<user>%2Fx");
    // Windows user names with spaces or apostrophes.
    check(
        "home-path",
        r#"USERPROFILE="C:\Users\Alice Smith""#,
        r#"USERPROFILE="C:\Users\<user>""#,
    );
    check(
        "home-path",
        r"cwd: C:\Users\Alice Smith",
        r"cwd: C:\Users\<user>",
    );
    check(
        "home-path",
        r"(in C:\Users\Alice Smith)",
        r"(in C:\Users\<user>)",
    );
    check("home-path", r"C:\Users\O'Brien\x", r"C:\Users\<user>\x");
    check(
        "home-path",
        r"C:\Users\bob is here",
        r"C:\Users\<user> is here",
    );
    check(
        "home-path",
        r"'C:\Users\bob' is here",
        r"'C:\Users\<user>' is here",
    );
    // JSON-escaped slashes.
    check("home-path", r"\/home\/bob\/x.rs", r"\/home\/<user>\/x.rs");
    check("home-path", r"C:\/Users\/bob", r"C:\/Users\/<user>");
    check("home-path", r"\/home\/alice\/x.rs", r"~\/x.rs");
    check("home-path", r"\/opt\/home\/x", r"\/opt\/home\/x");
    // The running user's home on another drive.
    check("home-path", r"D:\Users\alice\x.rs", r"~\x.rs");
    check("home-path", r"D:\Users\bob\x.rs", r"D:\Users\<user>\x.rs");
    check("home-path", "/opt/app/home/config", "/opt/app/home/config");
    check(
        "home-path",
        "https://example.com/home/index.html",
        "https://example.com/home/index.html",
    );
    check("home-path", "/Users/Shared/x", "/Users/Shared/x");
    check("home-path", r"C:\Users\Public\x", r"C:\Users\Public\x");
    // Homes on other file systems: a volume, a mount point, a network share, a remote host.
    // Never the running user's home in this session, so the user goes, not the path.
    for (input, expected) in [
        (
            "/System/Volumes/Data/Users/bob/x",
            "/System/Volumes/Data/Users/<user>/x",
        ),
        (
            "/Volumes/Backup/Users/bob/x",
            "/Volumes/Backup/Users/<user>/x",
        ),
        (
            "/Volumes/Macintosh HD/Users/bob/x",
            "/Volumes/Macintosh HD/Users/<user>/x",
        ),
        (
            "/System/Volumes/Data/Users/alice/x",
            "/System/Volumes/Data/Users/<user>/x",
        ),
        ("/nfs/home/bob/x.rs", "/nfs/home/<user>/x.rs"),
        ("/mnt/home/bob/x.rs", "/mnt/home/<user>/x.rs"),
        ("/mnt/home/alice/x.rs", "/mnt/home/<user>/x.rs"),
        ("/net/host/home/bob/x", "/net/host/home/<user>/x"),
        ("/media/backup/home/bob/x", "/media/backup/home/<user>/x"),
        (
            "/run/media/carol/Disk/home/bob/x",
            "/run/media/carol/Disk/home/<user>/x",
        ),
        ("/srv/home/bob/.bashrc", "/srv/home/<user>/.bashrc"),
        (
            "file://localhost/home/alice/x.rs",
            "file://localhost/home/<user>/x.rs",
        ),
        ("sftp://host/home/bob/x", "sftp://host/home/<user>/x"),
        ("ssh://host/Users/bob/x", "ssh://host/Users/<user>/x"),
        (
            "git+ssh://git@host/home/bob/repo.git",
            "git+ssh://git@host/home/<user>/repo.git",
        ),
        (
            "copied to '/Volumes/Backup/Users/bob/x'",
            "copied to '/Volumes/Backup/Users/<user>/x'",
        ),
        (
            r"\/Volumes\/Backup\/Users\/bob\/x",
            r"\/Volumes\/Backup\/Users\/<user>\/x",
        ),
        (
            "/Volumes/Backup/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
            "/Volumes/Backup/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de.rs",
        ),
    ] {
        check("home-path", input, expected);
    }
    for kept in [
        // Web routes, and homes after a root that does not start the path.
        "/api/home/dashboard",
        "/api/home/dashboard/x",
        "GET /v1/Users/bob/settings",
        "https://example.com/home/bob/x",
        "http://host/Users/bob/x",
        "/opt/mnt/home/bob/x",
        "x/mnt/home/bob/x",
        "/data/srv/home/bob/x",
        "my-sftp://host/home/bob/x",
        // No path after the user.
        "/mnt/home/dashboard",
        "sftp://host/home/index",
        "/Volumes/Backup/Users/bob",
        // Folders that name no person, and scrubbed homes.
        "/Volumes/Backup/Users/Shared/x",
        "/mnt/home/<user>/x",
        "src/main.rs:42",
        "../home/bob/x",
    ] {
        check("home-path", kept, kept);
    }
    check("home-path", "/root/x", "/root/x");
    check("home-path", "src/main.rs", "src/main.rs");
    check("home-path", "~/src/main.rs", "~/src/main.rs");
}

#[test]
fn home_path_of_special_users() {
    let root = Scrubber::builder().user("root").build().unwrap();
    check_with(&root, "home-path", "/root/.cargo/x.rs", "~/.cargo/x.rs");
    check_with(&root, "home-path", "the root cause", "the root cause");
    let jenkins = Scrubber::builder()
        .home_dir("/var/lib/jenkins")
        .build()
        .unwrap();
    check_with(
        &jenkins,
        "home-path",
        "/var/lib/jenkins/ws/x.rs",
        "~/ws/x.rs",
    );
    check_with(
        &jenkins,
        "home-path",
        "/var/lib/jenkins2/x",
        "/var/lib/jenkins2/x",
    );
    let admin = Scrubber::builder().user("admin").build().unwrap();
    check_with(
        &admin,
        "home-path",
        "/home/admin/x in admin panel",
        "~/x in admin panel",
    );
}

#[test]
fn user_name() {
    check("user-name", "alice did it", "<user> did it");
    check(
        "user-name",
        "ALICE, Alice and alice",
        "<user>, <user> and <user>",
    );
    check(
        "user-name",
        "git@github.com:alice/repo.git",
        "git@github.com:<user>/repo.git",
    );
    check("user-name", "alice_dev", "<user>_dev");
    check("user-name", "malice and aliceberg", "malice and aliceberg");
    check(
        "user-name",
        "the root user is admin",
        "the root user is admin",
    );
    // Learned from a home path in the same text.
    check(
        "user-name",
        "/home/bob/x failed; bob was logged in",
        "/home/<user>/x failed; <user> was logged in",
    );
    check(
        "user-name",
        "C:\\Users\\carol\\x and Carol",
        "C:\\Users\\<user>\\x and <user>",
    );
    check(
        "user-name",
        "USER=dave started; dave's job",
        "USER=<user> started; <user>'s job",
    );
    // Learned from UNC paths to user folders, percent-encoded and domain profile folders.
    check(
        "user-name",
        r"\\fileserver\c$\Users\dave\x; author dave",
        r"\\<hostname>\c$\Users\<user>\x; author <user>",
    );
    check(
        "user-name",
        "//server/Users/bob/x author bob",
        "//<hostname>/Users/<user>/x author <user>",
    );
    // Learned from homes on other file systems: volumes, mount points, remote hosts.
    check(
        "user-name",
        "/Volumes/Backup/Users/bob/x.rs failed; bob was logged in",
        "/Volumes/Backup/Users/<user>/x.rs failed; <user> was logged in",
    );
    check(
        "user-name",
        "sftp://host/home/carol/x by Carol",
        "sftp://host/home/<user>/x by <user>",
    );
    check(
        "user-name",
        "/nfs/home/dave/x.rs and dave",
        "/nfs/home/<user>/x.rs and <user>",
    );
    // Not after a web route, and short names are not chased.
    check(
        "home-path",
        "/api/home/dashboard/x; dashboard",
        "/api/home/dashboard/x; dashboard",
    );
    check(
        "home-path",
        "/mnt/home/ab/x and ab",
        "/mnt/home/<user>/x and ab",
    );
    check(
        "user-name",
        "file:///home/j%C3%B6rg/x.rs by J\u{f6}rg",
        "file:///home/<user>/x.rs by <user>",
    );
    check(
        "user-name",
        r"C:\Users\bob.CORP\x by bob",
        r"C:\Users\<user>\x by <user>",
    );
    check(
        "user-name",
        r"C:\Users\O'Brien\x and O'Brien",
        r"C:\Users\<user>\x and <user>",
    );
    check(
        "user-name",
        "HOME=/home/bob; bob",
        "HOME=/home/<user>; <user>",
    );
    // Learned names are guesses: they spare Rust paths, snake_case words and file names.
    check(
        "user-name",
        "/home/max/x core::cmp::max_by usize::max_value src/max.rs; max quit",
        "/home/<user>/x core::cmp::max_by usize::max_value src/max.rs; <user> quit",
    );
    // A bare `/home/x` or `/Users/x` (a web route) teaches no user.
    check(
        "home-path",
        "GET /home/dashboard and /Users/profile: dashboard profile",
        "GET /home/<user> and /Users/<user>: dashboard profile",
    );
    check(
        "user-name",
        "alice::config and alice.rs",
        "alice::config and <user>.rs",
    );
    // Short or common names are not chased.
    check("home-path", "/home/ab/x and ab", "/home/<user>/x and ab");
    check(
        "home-path",
        "/home/test/x; test passed",
        "/home/<user>/x; test passed",
    );
}

#[test]
fn full_name() {
    check("full-name", "Author: Alice Liddell", "Author: <user>");
    check(
        "full-name",
        "alice.liddell and ALICE_LIDDELL",
        "<user> and <user>",
    );
    check("full-name", "Liddell alone", "Liddell alone");
}

#[test]
fn hostname() {
    check("hostname", "on alice-laptop.example.com", "on <hostname>");
    check("hostname", "on ALICE-LAPTOP", "on <hostname>");
    check("hostname", "ssh alice-laptop:22", "ssh <hostname>:22");
    check("user-name", "alice-laptops", "<user>-laptops");
    check("hostname", "xalice-laptopx", "xalice-laptopx");
    // A name shaped like a personal machine's goes whoever it is.
    check("hostname-shape", "xalice-laptop", "<hostname>");
    // Learned from the text.
    check(
        "hostname",
        "HOSTNAME=buildbox7 then buildbox7 died",
        "HOSTNAME=<hostname> then <hostname> died",
    );
    check(
        "hostname",
        "COMPUTERNAME=DESKTOP-4FJ2K9 on desktop-4fj2k9",
        "COMPUTERNAME=<hostname> on <hostname>",
    );
    check(
        "hostname",
        r"\\fileserver\share\x.txt from FILESERVER",
        r"\\<hostname>\share\x.txt from <hostname>",
    );
    check("hostname", r"\\wsl$\Ubuntu\etc", r"\\wsl$\Ubuntu\etc");
    // UNC hosts go whatever their name, like the users of home paths.
    check(
        "hostname",
        r"copy \\fs\share\x",
        r"copy \\<hostname>\share\x",
    );
    check(
        "hostname",
        r"\\server\builds and server",
        r"\\<hostname>\builds and server",
    );
    check(
        "hostname",
        r#""\\\\fs01\\share""#,
        r#""\\\\<hostname>\\share""#,
    );
    check("hostname", r"\\?\UNC\nas7\x", r"\\?\UNC\<hostname>\x");
    check(
        "hostname",
        r"\\?\C:\x and \\.\pipe\y",
        r"\\?\C:\x and \\.\pipe\y",
    );
    check("hostname", r"\\localhost\c$\x", r"\\localhost\c$\x");
    // UNC paths with slashes, and `file://` URLs of a share, name their host too.
    check(
        "hostname",
        "//nas7/Users/bob/x from NAS7",
        "//<hostname>/Users/<user>/x from <hostname>",
    );
    check(
        "hostname",
        "file://fileserver/Users/bob/x; fileserver",
        "file://<hostname>/Users/<user>/x; <hostname>",
    );
    check(
        "hostname",
        "smb://nas7/home/bob/x",
        "smb://<hostname>/home/<user>/x",
    );
    check(
        "hostname",
        "https://cdn.example.com/lib.js and //cdn.example.com/lib.js",
        "https://cdn.example.com/lib.js and //cdn.example.com/lib.js",
    );
    check(
        "hostname",
        r"C:\\Users\\Public\\AppData",
        r"C:\\Users\\Public\\AppData",
    );
    check("hostname", "HOSTNAME=localhost", "HOSTNAME=localhost");
    // `server_name` and `contexts.device.name` go whole, however short or common the name.
    for name in ["vm", "ubuntu", "raspberrypi", "alice-laptop"] {
        let mut event = serde_json::json!({
            "server_name": name,
            "contexts": {"device": {"name": name}},
            "tags": {"server_name": name, "distro": "ubuntu"},
        });
        let report = SCRUBBER.scrub_value(&mut event).unwrap();
        assert_eq!(event["server_name"], "<hostname>", "{name}");
        assert_eq!(event["contexts"]["device"]["name"], "<hostname>", "{name}");
        assert_eq!(event["tags"]["distro"], "ubuntu");
        assert!(report.count_for_rule("hostname") >= 2);
        let mut again = event.clone();
        SCRUBBER.scrub_value(&mut again).unwrap();
        assert_eq!(again, event);
    }
}

#[test]
fn env_secret() {
    let plain = Scrubber::builder()
        .env_var("DB_PASSWORD", "sunshine")
        .env_var("API_SECRET", "moonlight")
        .env_var("XDG_SESSION_TYPE", "wayland")
        .env_var("MY_AUTH_MODE", "kerberos")
        .env_var("SHORT_TOKEN", "abc")
        .build()
        .unwrap();
    check_with(
        &plain,
        "env-secret",
        "connect with sunshine failed",
        "connect with <redacted> failed",
    );
    check_with(
        &plain,
        "env-secret",
        "moonlight; sunshines",
        "<redacted>; sunshines",
    );
    check_with(
        &plain,
        "env-secret",
        "wayland kerberos abc",
        "wayland kerberos abc",
    );
    // Secrets with a shape of their own are caught by that rule first.
    check(
        "github-token",
        "token ghp_0123456789abcdefghijABCDEFGHIJ012345!",
        "token <secret:github>!",
    );
    check(
        "env-secret",
        "login with Tr0ub4dor&3 failed",
        "login with <redacted> failed",
    );
    check("env-secret", "pg-Secret-77 rejected", "<redacted> rejected");
    check(
        "env-secret",
        "session type wayland for user",
        "session type wayland for user",
    );
    check(
        "env-secret",
        "RUST_LOG=debug LANG=en_US.UTF-8",
        "RUST_LOG=debug LANG=en_US.UTF-8",
    );
}

#[test]
fn env_assignment() {
    check(
        "secret-key-value",
        "SIGNING_KEY=abc123def456",
        "SIGNING_KEY=<redacted>",
    );
    check(
        "env-assignment",
        "MY_SECRET_THING=abc",
        "MY_SECRET_THING=<redacted>",
    );
    check(
        "secret-key-value",
        "SOME_API_KEY=zqx",
        "SOME_API_KEY=<redacted>",
    );
    check(
        "env-assignment",
        "DB_PASS_THING=\"x y\"",
        "DB_PASS_THING=\"<redacted>\"",
    );
    check(
        "secret-key-value",
        "DB_PASSWORD=\"a b c\" next",
        "DB_PASSWORD=\"<redacted>\" next",
    );
    check(
        "env-assignment",
        "export DB_PASS_THING='x y' next",
        "export DB_PASS_THING='<redacted>' next",
    );
    check(
        "env-assignment",
        "(DB_PASS_THING=abc)",
        "(DB_PASS_THING=<redacted>)",
    );
    check(
        "env-assignment",
        "XDG_SESSION_TYPE=x11",
        "XDG_SESSION_TYPE=x11",
    );
    check("env-assignment", "RUST_LOG=debug", "RUST_LOG=debug");
    check("env-assignment", "PWD=/tmp/build", "PWD=/tmp/build");
}

#[test]
fn secrets_by_shape() {
    check(
        "github-token",
        "ghp_0123456789abcdefghijABCDEFGHIJ999999",
        "<secret:github>",
    );
    check(
        "github-token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "<secret:github>",
    );
    check("github-token", "ghp_short", "ghp_short");
    check(
        "gitlab-token",
        "glpat-abcdefghij0123456789",
        "<secret:gitlab>",
    );
    check(
        "slack-token",
        "xoxb-123456789012-abcdefghij",
        "<secret:slack>",
    );
    check(
        "slack-token",
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "https://<secret:slack>",
    );
    check(
        "stripe-key",
        "sk_live_abcdefghij0123456789",
        "<secret:stripe>",
    );
    check(
        "stripe-key",
        "rk_live_abcdefghij0123456789",
        "<secret:stripe>",
    );
    check(
        "sk-api-key",
        "sk-proj-abcdefghij0123456789ABCD",
        "<secret:api-key>",
    );
    check(
        "sk-api-key",
        "sk-ant-api03-abcdefghij0123456789",
        "<secret:api-key>",
    );
    check(
        "sk-api-key",
        "task-runner-and-something-long",
        "task-runner-and-something-long",
    );
    check(
        "google-api-key",
        "key AIzaSyA0123456789abcdefghijklmnopqrstuv",
        "key <secret:google>",
    );
    check("aws-access-key", "AKIAIOSFODNN7EXAMPLE", "<secret:aws>");
    check("aws-access-key", "Asia/Tokyo", "Asia/Tokyo");
    check(
        "aws-secret-key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_secret_access_key = <secret:aws>",
    );
    check(
        "jwt",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcDEF123_-x",
        "<jwt>",
    );
    check(
        "pem-private-key",
        "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY----- end",
        "key: <secret:private-key> end",
    );
    check(
        "pem-private-key",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBAD",
        "<secret:private-key>",
    );
    check(
        "pem-private-key",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK----- end",
        "<secret:private-key> end",
    );
    check(
        "pem-private-key",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    check(
        "pem-private-key",
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATE-----",
    );
}

#[test]
fn secrets_by_shape_negatives() {
    for (rule, kept) in [
        // JWTs have three dot-separated parts, the first two base64url JSON (`eyJ`).
        ("jwt", "eyJ alone"),
        ("jwt", "eyJhbGciOiJIUzI1NiJ9"),
        ("jwt", "eyJhb.eyJz.sig"),
        ("jwt", "keyJabc.defgh.ijklm"),
        ("jwt", "heyJude.something.else"),
        // GitLab tokens: a known prefix at a word start and 20 characters at least.
        ("gitlab-token", "glpat-short"),
        ("gitlab-token", "gitlab-runner 16.11.0"),
        ("gitlab-token", "glpat_abcdefghij0123456789"),
        // Slack tokens: `xox` and a known letter, 10 characters at least; webhooks with a
        // path.
        ("slack-token", "xoxb-short"),
        ("slack-token", "xoxz-abcdefghij0123"),
        ("slack-token", "hooks.slack.com/services/"),
        ("slack-token", "https://api.slack.com/methods"),
        // Stripe: only secret and restricted keys, not publishable ones.
        ("stripe-key", "sk_live_short"),
        ("stripe-key", "pk_live_abcdefghij0123456789"),
        ("stripe-key", "ask_live_abcdefghij0123456789"),
        ("stripe-key", "desk_test_0123456789abcdef"),
        // Google API keys: `AIza` at a word start and exactly 35 more characters.
        ("google-api-key", "AIzaShort"),
        ("google-api-key", "AIzaSyA0123456789abcdefghijklmnopqrstu"),
        ("google-api-key", "aiza0123456789abcdefghijklmnopqrstuvwxy"),
        // AWS secret keys only next to a name saying so, and exactly 40 characters.
        ("aws-secret-key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        ("aws-secret-key", "aws_region = us-east-1"),
        (
            "aws-secret-key",
            "aws_region = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        (
            "aws-secret-key",
            "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        ),
        ("aws-secret-key", "aws_session_token_ttl: 3600"),
        ("aws-secret-key", "aws_key_rotation_days = 90"),
        ("aws-secret-key", "aws_secret_access_key = <secret:aws>"),
        (
            "aws-secret-key",
            "aws_key_path = /etc/aws/credentials/default/config.toml",
        ),
    ] {
        check(rule, kept, kept);
    }
}

#[test]
fn auth_header() {
    check(
        "auth-header",
        "Authorization: Bearer abc.DEF.123xyz",
        "Authorization: Bearer <redacted>",
    );
    check(
        "auth-header",
        "basic dXNlcjpwYXNzd29yZA==",
        "basic <redacted>",
    );
    check(
        "auth-header",
        "Authorization: Bearer abcdefghijklmnopqrst",
        "Authorization: Bearer <redacted>",
    );
    check(
        "auth-header",
        "Authorization: Bearer abc123",
        "Authorization: Bearer <redacted>",
    );
    check(
        "auth-header",
        "Authorization: Token xyz",
        "Authorization: Token <redacted>",
    );
    check(
        "auth-header",
        "proxy-authorization: xyz, next",
        "proxy-authorization: <redacted>, next",
    );
    check(
        "auth-header",
        r#"{"Authorization": "Basic dXNlcjpwYXNz", "Accept": "json"}"#,
        r#"{"Authorization": "Basic <redacted>", "Accept": "json"}"#,
    );
    check(
        "auth-header",
        "Cookie: session=abc def",
        "Cookie: <redacted>",
    );
    check(
        "auth-header",
        "sent Bearer abc123 to the api",
        "sent Bearer <redacted> to the api",
    );
    check(
        "auth-header",
        "bearer abcdefghijklmnopqrst",
        "bearer <redacted>",
    );
    check(
        "auth-header",
        "Bearer token required",
        "Bearer token required",
    );
    check(
        "auth-header",
        "the basic idea is 2 steps",
        "the basic idea is 2 steps",
    );
    check(
        "auth-header",
        "authorization::check and cookie::Jar",
        "authorization::check and cookie::Jar",
    );
    check(
        "auth-header",
        "basic tests passed successfully",
        "basic tests passed successfully",
    );
    check(
        "auth-header",
        "uses Bearer Authentication",
        "uses Bearer Authentication",
    );
}

#[test]
fn url_credentials() {
    check(
        "url-credentials",
        "postgres://app:hunter2@db:5432/x",
        "postgres://<redacted>@db:5432/x",
    );
    check(
        "url-credentials",
        "https://user:p%40ss@example.com/",
        "https://<redacted>@example.com/",
    );
    check(
        "url-credentials",
        "redis://:hunter2@cache:6379",
        "redis://<redacted>@cache:6379",
    );
    check(
        "url-credentials",
        r"https:\/\/bob:hunter2@host\/x",
        r"https:\/\/<redacted>@host\/x",
    );
    check(
        "url-credentials",
        "https://[::1]:8080/x@y",
        "https://[::1]:8080/x@y",
    );
    check(
        "url-credentials",
        "https://example.com/a@b",
        "https://example.com/a@b",
    );
    check(
        "url-credentials",
        "ssh://git@github.com/x",
        "ssh://git@github.com/x",
    );
    // The user alone, and the user beside a password another rule replaced.
    check(
        "url-credentials",
        "fatal: unable to access 'https://jdoe@bitbucket.org/acme/repo.git/'",
        "fatal: unable to access 'https://<redacted>@bitbucket.org/acme/repo.git/'",
    );
    check(
        "url-credentials",
        "https://mkowalski:ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@github.com/acme/pkg.git",
        "https://<redacted>:<secret:github>@github.com/acme/pkg.git",
    );
}

#[test]
fn secret_query_param() {
    check(
        "secret-query-param",
        "GET /x?token=abc123&page=2",
        "GET /x?token=<redacted>&page=2",
    );
    check(
        "secret-query-param",
        "/x?a=1&api_key=zqx",
        "/x?a=1&api_key=<redacted>",
    );
    check(
        "secret-query-param",
        "/x?q=1&password=p4ss#top",
        "/x?q=1&password=<redacted>#top",
    );
    check(
        "secret-query-param",
        "/s3?X-Amz-Signature=0f1e2d",
        "/s3?X-Amz-Signature=<redacted>",
    );
    check(
        "secret-query-param",
        "/x?pass=abc&pwd=def&jwt=ghi&bearer=jkl",
        "/x?pass=<redacted>&pwd=<redacted>&jwt=<redacted>&bearer=<redacted>",
    );
    check(
        "secret-query-param",
        "(see /x?token=abc123)",
        "(see /x?token=<redacted>)",
    );
    check("secret-query-param", "/x?passage=3", "/x?passage=3");
    check(
        "secret-query-param",
        "/x?design=blue&page=2",
        "/x?design=blue&page=2",
    );
    check("secret-query-param", "/x?monkey=1", "/x?monkey=1");
}

#[test]
fn secret_key_value() {
    check(
        "secret-key-value",
        "password=hunter2 ok",
        "password=<redacted> ok",
    );
    check(
        "secret-key-value",
        "password: hunter2",
        "password: <redacted>",
    );
    check(
        "secret-key-value",
        r#"{"api_key": "abc123"}"#,
        r#"{"api_key": "<redacted>"}"#,
    );
    check(
        "secret-key-value",
        r#"{\"token\":\"abc123\"}"#,
        r#"{\"token\":\"<redacted>\"}"#,
    );
    check("secret-key-value", "token=abc", "token=<redacted>");
    check(
        "secret-key-value",
        "'session': 'abc'",
        "'session': '<redacted>'",
    );
    check(
        "secret-key-value",
        "unexpected token: identifier",
        "unexpected token: identifier",
    );
    check(
        "secret-key-value",
        "session::load failed",
        "session::load failed",
    );
    check(
        "secret-key-value",
        r#"body {"password": "correct horse battery staple"} sent"#,
        r#"body {"password": "<redacted>"} sent"#,
    );
    check(
        "secret-key-value",
        r#"password: "a \" b" ok"#,
        r#"password: "<redacted>" ok"#,
    );
    check(
        "secret-key-value",
        r#"{\"password\":\"a b c\"}"#,
        r#"{\"password\":\"<redacted>\"}"#,
    );
    check(
        "secret-key-value",
        r#"x {"token": 12345678} y"#,
        r#"x {"token": <redacted>} y"#,
    );
    check(
        "secret-key-value",
        "token: supersecretvalue",
        "token: <redacted>",
    );
    check("secret-key-value", "auth: hunter2", "auth: <redacted>");
    check(
        "secret-key-value",
        "session: abcdefghijk",
        "session: <redacted>",
    );
    check("secret-key-value", "csrf: abcdefgh", "csrf: <redacted>");
    check("secret-key-value", "token: expired", "token: expired");
    check(
        "secret-key-value",
        "auth: failed twice",
        "auth: failed twice",
    );
    check("secret-key-value", "max_tokens: 100", "max_tokens: 100");
    check(
        "secret-key-value",
        "http://auth:8080/login",
        "http://auth:8080/login",
    );
    check("secret-key-value", "author=Lewis", "author=Lewis");
    check("secret-key-value", "token_count=5", "token_count=5");
}

/// Scrubs `{key: value}` and checks the value is `expected`, the `deny-key` rule reported
/// (only when the value changed) and the result stable.
#[track_caller]
fn check_key(key: &str, value: serde_json::Value, expected: serde_json::Value) {
    let mut event = serde_json::json!({ key: value.clone() });
    let report = SCRUBBER.scrub_value(&mut event).unwrap();
    assert_eq!(
        event,
        serde_json::json!({ key: expected.clone() }),
        "key {key:?}"
    );
    let count = report.count_for_rule("deny-key");
    if value == expected {
        assert_eq!(count, 0, "deny-key reported a match on {key:?}:\n{report}");
    } else {
        assert!(
            count > 0,
            "deny-key not in the report for {key:?}:\n{report}"
        );
    }
    let mut again = event.clone();
    SCRUBBER.scrub_value(&mut again).unwrap();
    assert_eq!(again, event, "not idempotent on {key:?}");
}

#[test]
fn deny_key() {
    use serde_json::json;
    // Keys compare by words, ignoring case and separators; some words may follow the name
    // (`session_id`, `password_hash`, `AWS_SECRET_ACCESS_KEY`).
    for key in [
        "password",
        "PASSWORD",
        "passwd",
        "pass",
        "pwd",
        "db_password",
        "password_hash",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "jwt",
        "bearer",
        "api_key",
        "apikey",
        "apiKey",
        "X-Api-Key",
        "auth",
        "authorization",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "session",
        "sessionId",
        "session_id",
        "sid",
        "PHPSESSID",
        "connect.sid",
        "csrf",
        "csrftoken",
        "_xsrf",
        "private_key",
        "private_key_path",
        "credentials",
        "AWS_SECRET_ACCESS_KEY",
        "username",
    ] {
        check_key(key, json!("swordfish-42"), json!("<redacted>"));
    }
    // A deny word inside a longer word, or followed by a word that makes the key about
    // something else, is no secret's name.
    for key in [
        "tokenizer",
        "tokens",
        "token_count",
        "tokenType",
        "author",
        "authority",
        "authenticated",
        "auth_mode",
        "oauth",
        "session_start",
        "sessions",
        "passage",
        "passport",
        "bypass",
        "compass",
        "secretary",
        "monkey",
        "keyboard",
        "key",
        "description",
        "cookie_policy",
        "csrf_enabled",
        "jwt_expiry",
        "side",
        "cwd",
    ] {
        check_key(key, json!("swordfish-42"), json!("swordfish-42"));
    }
    // Not a secret, but a user's name, which the user-name rule removes.
    let mut event = json!({ "user": "swordfish-42" });
    let report = SCRUBBER.scrub_value(&mut event).unwrap();
    assert_eq!(event, json!({ "user": "<user>" }));
    assert_eq!(report.count_for_rule("user-name"), 1, "{report}");
    // The value goes whatever it holds; the shape stays.
    check_key("token", json!(12345), json!(0));
    check_key("token", json!(1.5), json!(0));
    check_key(
        "token",
        json!(["abc", "def"]),
        json!(["<redacted>", "<redacted>"]),
    );
    check_key(
        "password",
        json!({"a": "b", "n": 3}),
        json!({"a": "<redacted>", "n": 0}),
    );
    check_key("token", json!(null), json!(null));
    check_key("token", json!(true), json!(true));
    check_key("password", json!(""), json!(""));
    // At any depth.
    let mut event = json!({"a": {"b": [{"Cookie": "swordfish-42"}]}});
    SCRUBBER.scrub_value(&mut event).unwrap();
    assert_eq!(event, json!({"a": {"b": [{"Cookie": "<redacted>"}]}}));
}

#[test]
fn email() {
    check(
        "email",
        "next=%2Fdashboard%3Ffoo%3Dbar%26email%3Djane%40example.com",
        "next=%2Fdashboard%3Ffoo%3Dbar%26email%3D<email>",
    );
    check("email", "q=a%253Djane%2540example.com", "q=a%253D<email>");
    check("email", "mail bob@example.com now", "mail <email> now");
    check("email", "<Bob.Smith+tag@mail.example.co.uk>", "<<email>>");
    check("email", "bob%40example.com", "<email>");
    check(
        "email",
        "git@github.com:org/repo",
        "git@github.com:org/repo",
    );
    check("email", "icon@2x.png", "icon@2x.png");
    check("email", "serde@1.0.219", "serde@1.0.219");
    check("email", "@scope/pkg", "@scope/pkg");
    // Internationalised, and the `@` encoded twice or as an HTML entity.
    check("email", "from müller@bücher.de now", "from <email> now");
    check("email", "Ärger.Ölbaum@例え.テスト x", "<email> x");
    check("email", "jane.doe&#64;example.com", "<email>");
    check("email", "jane.doe&#x40;example.com", "<email>");
    check("email", "mailto:jane%2540example.com", "mailto:<email>");
    check("email", "résumé@2x.png", "résumé@2x.png");
}

#[test]
fn ip_addresses() {
    check("ipv4", "from 203.0.113.7:443", "from <ip>:443");
    check("ipv4", "10.0.0.1", "<ip>");
    check("ipv4", "127.0.0.1:8080", "127.0.0.1:8080");
    check("ipv4", "0.0.0.0", "0.0.0.0");
    check("ipv4", "Windows 10.0.19045.3803", "Windows 10.0.19045.3803");
    check("ipv4", "version 1.2.3", "version 1.2.3");
    check("ipv4", "version 1.2.3.4", "version 1.2.3.4");
    check("ipv4", "Version: 10.1.2.3", "Version: 10.1.2.3");
    check("ipv4", "v 1.2.3.4", "v 1.2.3.4");
    check("ipv4", "server 10.1.2.3", "server <ip>");
    check("ipv4", "dev 10.1.2.3", "dev <ip>");
    check("ipv4", "999.1.1.1", "999.1.1.1");
    check("ipv4", "v1.2.3.4", "v1.2.3.4");
    for kept in [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36",
        "Electron/28.1.2.3 and libssl.so.1.1.1.1 and ~[app-1.2.3.4.jar:na]",
        "Microsoft.NETCore.App 8.0.0.0 and subnet 10.1.2.0",
    ] {
        check("ipv4", kept, kept);
    }
    check(
        "ipv4",
        "GET http://10.1.2.3/x from 10.1.2.4.",
        "GET http://<ip>/x from <ip>.",
    );
    check(
        "ipv4",
        "kernel 5.15.153.1-microsoft-standard-WSL2",
        "kernel 5.15.153.1-microsoft-standard-WSL2",
    );
    check("ipv4", "ssh admin@192.168.1.20", "ssh <user>@<ip>");
    check("ipv6", "from 2001:db8::1 port", "from <ip> port");
    check("ipv6", "[fe80::1ff:fe23:4567:890a%eth0]:80", "[<ip>]:80");
    check("ipv6", "::1", "::1");
    check("ipv6", "std::io::Error", "std::io::Error");
    check("ipv6", "a::b and abc::def1", "a::b and abc::def1");
    check("ipv6", "fe80::1", "fe80::1");
    check("ipv6", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "<ip>");
    check("ipv6", "at 12:34:56", "at 12:34:56");
    check(
        "ipv6",
        "<T as core::fmt::Debug>::fmt",
        "<T as core::fmt::Debug>::fmt",
    );
}

#[test]
fn mac_address() {
    check("mac-address", "hw 00:1a:2b:3c:4d:5e", "hw <mac>");
    check("mac-address", "00-1A-2B-3C-4D-5E", "<mac>");
    check("mac-address", "00:1a-2b:3c:4d:5e", "00:1a-2b:3c:4d:5e");
    check("mac-address", "00:00:00:00:00:00", "00:00:00:00:00:00");
    check(
        "mac-address",
        "iface 00-1a-2b-3c-4d-5e down",
        "iface <mac> down",
    );
    check("mac-address", "cisco 001a.2b3c.4d5e up", "cisco <mac> up");
    check(
        "mac-address",
        "build 2023.1101.0930",
        "build 2023.1101.0930",
    );
    check(
        "mac-address",
        "v 1a2b.3c4d.5e6f.7a8b",
        "v 1a2b.3c4d.5e6f.7a8b",
    );
    check(
        "mac-address",
        "550e8400-e29b-41d4-a716-446655440000",
        "550e8400-e29b-41d4-a716-446655440000",
    );
}

#[test]
fn credit_card() {
    check(
        "credit-card",
        "card 4111 1111 1111 1111 ok",
        "card <card> ok",
    );
    check("credit-card", "4111-1111-1111-1111", "<card>");
    check("credit-card", "5555555555554444", "<card>");
    check("credit-card", "378282246310005", "<card>");
    check("credit-card", "4111111111111112", "4111111111111112");
    check("credit-card", "ts=1700000000000", "ts=1700000000000");
    check("credit-card", "4111 1111-1111 1111", "4111 1111-1111 1111");
}

#[test]
fn iban() {
    check(
        "iban",
        "IBAN DE89 3704 0044 0532 0130 00 IS MINE",
        "IBAN <iban> IS MINE",
    );
    check("iban", "GB82WEST12345698765432", "<iban>");
    check("iban", "GB82WEST12345698765433", "GB82WEST12345698765433");
    check("iban", "DE12ABCDEF0123456789", "DE12ABCDEF0123456789");
}

#[test]
fn us_ssn() {
    check("us-ssn", "ssn 123-45-6789.", "ssn <ssn>.");
    check("us-ssn", "000-12-3456", "000-12-3456");
    check("us-ssn", "666-12-3456", "666-12-3456");
    check("us-ssn", "2024-01-15", "2024-01-15");
}

#[test]
fn phone() {
    check("phone", "call +44 20 7946 0958", "call <phone>");
    check("phone", "+1 (415) 555-2671", "<phone>");
    check("phone", "+14155552671", "<phone>");
    check("phone", "1.0.0+20240101123456", "1.0.0+20240101123456");
    check("phone", "UTC+05:30", "UTC+05:30");
    check("phone", "C++ 17", "C++ 17");
}

#[test]
fn must_keep() {
    for text in [
        "thread 'main' panicked at src/main.rs:42:7:",
        "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound }",
        "serde-1.0.219",
        "request 550e8400-e29b-41d4-a716-446655440000",
        "commit 3f786850e387550fdab836ed7e6dc881de23001b",
        "HTTP 404 Not Found",
        "rustc 1.95.0 (59807616e 2026-04-14)",
        "Ubuntu 24.04.1 LTS",
        "macOS 14.5 (23F79)",
        "Windows 10.0.19045",
        "std::io::Error",
        "core::panicking::panic_fmt",
        "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop",
        "2024-01-15T12:34:56.789Z",
        "0x00007ff6a1b2c3d4",
        "debug_id 3b4e5f6a-1234-4bcd-9ef0-0123456789ab-1",
        "tokio-1.40.0/src/runtime/park.rs",
        "RUST_LOG=debug",
        "my_app::session::load",
        "the root cause was an admin user test",
        "unexpected token: identifier",
        "Bearer token required",
        "cookie::CookieJar::add",
        "version 1.2.3.4",
        "Lorem ipsum dolor sit amet",
    ] {
        keep(text);
    }
}

#[test]
fn app_rules() {
    let scrubber = Scrubber::builder()
        .rule(RuleConfig::literal(
            "codename",
            ["Nightingale", "Blue Heron"],
        ))
        .rule(
            RuleConfig::regex("ticket", r"\bTCK-(?P<n>[0-9]{6})\b")
                .with_group("n")
                .with_redaction(Redaction::Mask),
        )
        .rule(
            RuleConfig::literal("host-part", ["corp"])
                .substring()
                .case_sensitive(),
        )
        .salt(b"s")
        .build()
        .unwrap();
    check_with(
        &scrubber,
        "codename",
        "project blue heron shipped",
        "project <redacted> shipped",
    );
    check_with(&scrubber, "codename", "Nightingales", "Nightingales");
    check_with(&scrubber, "ticket", "see TCK-123456", "see TCK-******");
    check_with(
        &scrubber,
        "host-part",
        "intracorp.net and CORP",
        "intra<redacted>.net and CORP",
    );
}

/// Assignments in the syntaxes of programming languages, build files and config formats.
#[test]
fn assignment_syntaxes() {
    for (rule, input, expected) in [
        // Go, make, Pascal: `:=`, `::=`, `:::=`, `?=`, `+=`; PHP `.=`; Perl/Ruby/logstash `=>`.
        (
            "secret-key-value",
            r#"dbToken := "q7Rk2mVx9Lp""#,
            r#"dbToken := "<redacted>""#,
        ),
        (
            "secret-key-value",
            "DEPLOY_TOKEN ::= q7Rk2mVx9Lp",
            "DEPLOY_TOKEN ::= <redacted>",
        ),
        (
            "secret-key-value",
            "DEPLOY_TOKEN :::= q7Rk2mVx9Lp",
            "DEPLOY_TOKEN :::= <redacted>",
        ),
        (
            "secret-key-value",
            "DEPLOY_TOKEN ?= q7Rk2mVx9Lp",
            "DEPLOY_TOKEN ?= <redacted>",
        ),
        (
            "secret-key-value",
            r#"$dbPassword .= "q7Rk2mVx9Lp""#,
            r#"$dbPassword .= "<redacted>""#,
        ),
        (
            "secret-key-value",
            r#""api_token" => "q7Rk2mVx9Lp""#,
            r#""api_token" => "<redacted>""#,
        ),
        // Typed declarations: Go, Python, TypeScript, Kotlin.
        (
            "secret-key-value",
            r#"var apiToken string = "q7Rk2mVx9Lp""#,
            r#"var apiToken string = "<redacted>""#,
        ),
        (
            "secret-key-value",
            r#"password: str = "q7Rk2mVx9Lp""#,
            r#"password: str = "<redacted>""#,
        ),
        // Backquoted values (Go raw strings); a backquoted command is not a value.
        (
            "secret-key-value",
            "dbToken := `q7Rk2mVx9Lp`",
            "dbToken := `<redacted>`",
        ),
        (
            "secret-key-value",
            "TOKEN=`vault read -field=x kv/app`",
            "TOKEN=`vault read -field=x kv/app`",
        ),
        // Comparisons with a literal.
        (
            "secret-key-value",
            r#"if (password == "q7Rk2mVx9Lp")"#,
            r#"if (password == "<redacted>")"#,
        ),
        // After a `{:?}`-escaped newline or tab, and percent-encoded.
        (
            "secret-key-value",
            r"a\npassword=q7Rk2mVx9Lp\tb",
            r"a\npassword=<redacted>\tb",
        ),
        (
            "secret-key-value",
            "password%3Dq7Rk2mVx9Lp",
            "password%3D<redacted>",
        ),
        (
            "secret-key-value",
            "next=%2Fcb%3Fid%3D1%26token%3Dq7Rk2mVx9Lp",
            "next=%2Fcb%3Fid%3D1%26token%3D<redacted>",
        ),
        (
            "secret-key-value",
            "x%253Fpassword%253Dq7Rk2mVx9Lp",
            "x%253Fpassword%253D<redacted>",
        ),
        // Rust's `Debug` of wrapped values, Python's prefixed literals.
        (
            "secret-key-value",
            r#"Config { token: Some("q7Rk2mVx9Lp"), retries: 3 }"#,
            r#"Config { token: Some("<redacted>"), retries: 3 }"#,
        ),
        (
            "secret-key-value",
            r#"password: String::from("q7Rk2mVx9Lp")"#,
            r#"password: String::from("<redacted>")"#,
        ),
        (
            "secret-key-value",
            "{'token': b'q7Rk2mVx9Lp'}",
            "{'token': b'<redacted>'}",
        ),
        ("secret-key-value", "token: None", "token: None"),
        (
            "secret-pair",
            r#"args: ["-u", "ops:q7Rk2mVx9Lp", "-v"]"#,
            r#"args: ["-u", "<redacted>", "-v"]"#,
        ),
        (
            "secret-pair",
            r#"["-u", "ops", "-v"]"#,
            r#"["-u", "ops", "-v"]"#,
        ),
        // JSON escaped twice; subscript assignments; command substitution.
        (
            "secret-key-value",
            r#"{\\\"token\\\": \\\"q7Rk2mVx9Lp\\\"}"#,
            r#"{\\\"token\\\": \\\"<redacted>\\\"}"#,
        ),
        (
            "secret-pair",
            r#"os.environ["DB_PASS"] = "q7Rk2mVx9Lp""#,
            r#"os.environ["DB_PASS"] = "<redacted>""#,
        ),
        (
            "secret-pair",
            "ENV['STRIPE_SECRET']='q7Rk2mVx9Lp'",
            "ENV['STRIPE_SECRET']='<redacted>'",
        ),
        (
            "secret-key-value",
            "export API_TOKEN=$(cat /run/secrets/t)",
            "export API_TOKEN=$(cat /run/secrets/t)",
        ),
        (
            "secret-key-value",
            "secret_key_base: 4f9a8c7b6e5d4c3b2a1f0e9d8c7b6a5f",
            "secret_key_base: <redacted>",
        ),
        // `name := value` is not read as a name `name :` with the value `=`.
        ("secret-key-value", "token := abc", "token := <redacted>"),
        // Elements and attributes.
        (
            "secret-element",
            "<password>q7Rk2mVx9Lp</password>",
            "<password><redacted></password>",
        ),
        (
            "secret-element",
            "<ApiToken>\n  q7Rk2mVx9Lp\n</ApiToken>",
            "<ApiToken>\n  <redacted>\n</ApiToken>",
        ),
        (
            "secret-element",
            "<name>q7Rk2mVx9Lp</name>",
            "<name>q7Rk2mVx9Lp</name>",
        ),
        (
            "secret-element",
            "<password>x</passwd>",
            "<password>x</passwd>",
        ),
        (
            "secret-attribute",
            r#"<add key="Password" value="q7Rk2mVx9Lp"/>"#,
            r#"<add key="Password" value="<redacted>"/>"#,
        ),
        (
            "secret-attribute",
            r#"<add key="Timeout" value="30"/>"#,
            r#"<add key="Timeout" value="30"/>"#,
        ),
        // Calls and lists: a quoted name, then its quoted value.
        (
            "secret-pair",
            r#"System.setProperty("db.password", "q7Rk2mVx9Lp")"#,
            r#"System.setProperty("db.password", "<redacted>")"#,
        ),
        (
            "secret-pair",
            r#"["--password", "q7Rk2mVx9Lp"]"#,
            r#"["--password", "<redacted>"]"#,
        ),
        (
            "secret-pair",
            r#"fields = ["password", "email"]"#,
            r#"fields = ["password", "email"]"#,
        ),
        (
            "secret-pair",
            r#"setProperty("log.level", "debug")"#,
            r#"setProperty("log.level", "debug")"#,
        ),
        // Command-line flags with the value as the next argument.
        (
            "secret-flag",
            "app --token q7Rk2mVx9Lp --verbose",
            "app --token <redacted> --verbose",
        ),
        (
            "secret-flag",
            r#"cli --api-key "q7Rk2mVx9Lp""#,
            r#"cli --api-key "<redacted>""#,
        ),
        (
            "secret-flag",
            "curl -u deploy:q7Rk2mVx9Lp https://x.test",
            "curl -u <redacted> https://x.test",
        ),
        (
            "secret-flag",
            "the --token flag is required",
            "the --token flag is required",
        ),
        ("secret-flag", "curl -u \"$1:$2\" x", "curl -u \"$1:$2\" x"),
        ("secret-flag", "app --timeout 30", "app --timeout 30"),
    ] {
        check(rule, input, expected);
    }
}

/// Names that only may hold a secret (`*_KEY`, `*TOKEN`, `login`) take values that look
/// random; harmless values under secret names stay.
#[test]
fn secret_names_and_harmless_values() {
    for (rule, input, expected) in [
        (
            "secret-key-value",
            "ENCRYPTION_KEY=9fQ2xL7pRt4Kw8Zm",
            "ENCRYPTION_KEY=<redacted>",
        ),
        (
            "secret-key-value",
            "stripeKey: \"9fQ2xL7pRt4Kw8Zm\"",
            "stripeKey: \"<redacted>\"",
        ),
        (
            "secret-query-param",
            "Endpoint=x;AccountKey=9fQ2xL7pRt4Kw8Zm+a/b==;",
            "Endpoint=x;AccountKey=<redacted>;",
        ),
        (
            "secret-key-value",
            "AccountKey=9fQ2xL7pRt4Kw8Zm+a/b==",
            "AccountKey=<redacted>",
        ),
        (
            "secret-key-value",
            "creds = 9fQ2xL7pRt4Kw8Zm",
            "creds = <redacted>",
        ),
        ("secret-key-value", "otp: 482913", "otp: <redacted>"),
        (
            "secret-key-value",
            "two_factor=482913",
            "two_factor=<redacted>",
        ),
        (
            "secret-key-value",
            "\"token1\": \"9fQ2xL7pRt4Kw8Zm\"",
            "\"token1\": \"<redacted>\"",
        ),
        (
            "secret-key-value",
            "2fa_secret=9fQ2xL7pRt4Kw8Zm",
            "2fa_secret=<redacted>",
        ),
        (
            "secret-key-value",
            "x_forwarded_for=203.0.113.9",
            "x_forwarded_for=<redacted>",
        ),
        // Harmless: keys of tables, placeholders, booleans, small numbers, references.
        ("secret-key-value", "primary_key = id", "primary_key = id"),
        (
            "secret-key-value",
            "sort_key=created_at",
            "sort_key=created_at",
        ),
        (
            "secret-key-value",
            "SIGNING_KEY=ak-9fQ2xL7pRt4Kw8Zm",
            "SIGNING_KEY=<redacted>",
        ),
        (
            "secret-key-value",
            "monkey=9fQ2xL7pRt4Kw8Zm",
            "monkey=9fQ2xL7pRt4Kw8Zm",
        ),
        ("secret-key-value", "SavePassword=0", "SavePassword=0"),
        ("secret-key-value", "password: false", "password: false"),
        (
            "secret-key-value",
            "db_password = var.db_password",
            "db_password = var.db_password",
        ),
        (
            "secret-key-value",
            "api_key = \"<YOUR_API_KEY>\"",
            "api_key = \"<YOUR_API_KEY>\"",
        ),
        (
            "secret-key-value",
            "token: xoxb-your-token-here",
            "token: xoxb-your-token-here",
        ),
        ("secret-key-value", "password=xxxx", "password=xxxx"),
        (
            "secret-key-value",
            "token = ${DEPLOY_TOKEN}",
            "token = ${DEPLOY_TOKEN}",
        ),
        (
            "secret-key-value",
            "api_key=\"%s\" % key",
            "api_key=\"%s\" % key",
        ),
        (
            "secret-key-value",
            "secret = process.env.SECRET",
            "secret = process.env.SECRET",
        ),
        (
            "secret-query-param",
            "/x?access_token=ACCESS_TOKEN",
            "/x?access_token=ACCESS_TOKEN",
        ),
        (
            "env-assignment",
            "SIGNING_KEY_FILE=/etc/app/key.pem",
            "SIGNING_KEY_FILE=/etc/app/key.pem",
        ),
    ] {
        check(rule, input, expected);
    }
}

/// Vendor token formats (made-up values in the documented shapes), glued or escaped.
#[test]
fn vendor_tokens() {
    let hex64 = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let alnum40 = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LzXcVbNmQa";
    for (rule, token) in [
        ("vendor-token", format!("ntn_{alnum40}")),
        ("vendor-token", format!("sgp_{}", &hex64[..40])),
        ("vendor-token", format!("hvs.{alnum40}")),
        ("vendor-token", format!("SG.{}.{}", &alnum40[..22], alnum40)),
        ("vendor-token", format!("pypi-AgE{alnum40}{alnum40}")),
        ("vendor-token", format!("hf_{}", &alnum40[..34])),
        ("vendor-token", format!("dop_v1_{hex64}")),
        ("vendor-token", format!("key-{}", &hex64[..32])),
        ("vendor-token", format!("npm_{}", &alnum40[..36])),
        ("vendor-token", format!("sntryu_{hex64}")),
        (
            "vendor-token",
            "A3-Q1W2E3-R4T5Y6U7I8O-P9A8S-D7F6G-H5J4K".to_owned(),
        ),
        ("vendor-token", format!("EAA{alnum40}{alnum40}")),
        ("vendor-token-shape", format!("{}-us14", &hex64[..32])),
        (
            "vendor-token-shape",
            format!("123456789:AA{}", &alnum40[..33]),
        ),
        (
            "discord-bot-token",
            format!("MTIz{}.Gx7Qp2.{}", &alnum40[..20], &alnum40[..30]),
        ),
        ("vendor-token-shape", format!("abc7Q~{}", &alnum40[..32])),
        ("slack-token", format!("xapp-1-A0B1C2D3E4-{}", &hex64[..30])),
        (
            "slack-token",
            format!("hooks.slack.com/workflows/T0/{}", &alnum40[..20]),
        ),
        ("jwt", format!("ZXlK{alnum40}{alnum40}")),
    ] {
        check(
            rule,
            &token,
            &format!(
                "<secret:{}>",
                if rule.starts_with("vendor") || rule.starts_with("discord") {
                    "token"
                } else if rule == "jwt" {
                    "jwt"
                } else {
                    "slack"
                }
            )
            .replace("<secret:jwt>", "<jwt>"),
        );
    }
    // Glued to a word, after an escape, after `%3D`.
    check(
        "github-token",
        &format!("x_ghp_{}", &alnum40[..36]),
        "x_<secret:github>",
    );
    check(
        "aws-access-key",
        "keyAKIAQ1W2E3R4T5Y6U7I8",
        "key<secret:aws>",
    );
    check(
        "stripe-key",
        &format!("x_sk_live_{}", &alnum40[..24]),
        "x<secret:stripe>",
    );
    check("jwt", r"a\neyJhbGciOi.eyJzdWIiOi.c2ln", r"a\n<jwt>");
    check(
        "github-token",
        &format!("t%3Dghp_{}", &alnum40[..36]),
        "t%3D<secret:github>",
    );
    // Examples and near misses stay.
    for kept in [
        "xoxb-your-token-here",
        "xoxp-1234567890",
        "sntryu_0f1e2d3c",
        "hf_hub_download",
        "key-value store",
        "ntn_short",
        "-----BEGIN PRIVATE KEY-----\nanything\n-----END PRIVATE KEY-----",
        "MAC address aa:bb:cc:dd:ee:ff",
        "IBAN DE00 1234 5678 9012 3456 78 is invalid",
    ] {
        keep(kept);
    }
}

/// Personal data in more formats: national phone numbers, SSNs with spaces or dots,
/// Bitcoin addresses, UATP cards, IBANs grouped with dashes.
#[test]
fn personal_formats() {
    for (rule, input, expected) in [
        (
            "phone-national",
            "call (212) 555-0147 now",
            "call <phone> now",
        ),
        ("phone-national", "tel 212-555-0147", "tel <phone>"),
        ("phone-national", "携帯 090-2222-3333", "携帯 <phone>"),
        ("phone-national", "office 03-5555-1234", "office <phone>"),
        ("phone-national", "phone: 13912345678", "phone: <phone>"),
        ("phone-national", "id 13912345678", "id 13912345678"),
        ("phone-national", "2024-01-15 12:00", "2024-01-15 12:00"),
        ("phone-national", "v1.212-555-0147-x", "v1.212-555-0147-x"),
        ("us-ssn", "ssn 219 09 9999", "ssn <ssn>"),
        ("us-ssn", "ssn 219.09.9999", "ssn <ssn>"),
        ("us-ssn", "ssn 219.09-9999", "ssn 219.09-9999"),
        ("us-ssn", "1.219.09.9999", "1.219.09.9999"),
        (
            "crypto-address",
            "to 1eBMeTpiB6V3JQLTvaK3u944WAVRfVGmK ok",
            "to <crypto> ok",
        ),
        (
            "crypto-address",
            "to 32LCHBxGG5Qs8U6mb2EuUXVzD2TD1qYbUi",
            "to <crypto>",
        ),
        (
            "crypto-address",
            "bc1qq8w4ur23clxd5mzfsh79vn6pg0kaytjegnezmj",
            "<crypto>",
        ),
        (
            "crypto-address",
            "to 1eBMeTpiB6V3JQLTvaK3u944WAVRgyG3f ok",
            "to 1eBMeTpiB6V3JQLTvaK3u944WAVRgyG3f ok",
        ),
        ("credit-card", "uatp 100000000000124", "uatp <card>"),
        (
            "imei",
            "device 49-015420-323751-8 lost",
            "device <imei> lost",
        ),
        ("imei", "IMEI: 490154203237518", "IMEI: <imei>"),
        ("imei", "IMEI: 490154203237517", "IMEI: 490154203237517"),
        ("imei", "id 490154203237518", "id 490154203237518"),
        ("iban", "GB40-ABCD-1122-3344-5566-77", "<iban>"),
        ("iban", "LY27002048000020100120399", "<iban>"),
        (
            "iban",
            "GB41 ABCD 1122 3344 5566 77",
            "GB41 ABCD 1122 3344 5566 77",
        ),
    ] {
        check(rule, input, expected);
    }
}

/// Random-looking values in secret positions, whatever the name; hashes and ids stay.
#[test]
fn random_values_and_manifests() {
    for (rule, input, expected) in [
        (
            "random-value",
            "acme_cfg = Qm9x3LpZ7rT2vWn8Yk4sHd6J",
            "acme_cfg = <redacted>",
        ),
        (
            "random-value",
            "\"acme\": \"Qm9x3LpZ7rT2vWn8Yk4sHd6J\"",
            "\"acme\": \"<redacted>\"",
        ),
        (
            "random-value",
            "commit = Qm9x3LpZ7rT2vWn8Yk4sHd6J",
            "commit = Qm9x3LpZ7rT2vWn8Yk4sHd6J",
        ),
        (
            "random-value",
            "head = 3f786850e387550fdab836ed7e6dc881de23001b",
            "head = 3f786850e387550fdab836ed7e6dc881de23001b",
        ),
        (
            "random-value",
            "ref: 0f8e2c4a-1b3d-4e5f-9a8b-7c6d5e4f3a2b",
            "ref: 0f8e2c4a-1b3d-4e5f-9a8b-7c6d5e4f3a2b",
        ),
        (
            "random-value",
            "class = MyVeryLongClassNameForTests2",
            "class = MyVeryLongClassNameForTests2",
        ),
        (
            "random-value",
            "lib = libfoo-Qm9x3LpZ7rT2vWn8.so",
            "lib = libfoo-Qm9x3LpZ7rT2vWn8.so",
        ),
        (
            "random-value",
            "my address is: Qm9x3LpZ7rT2vWn8Yk4sHd6J",
            "my address is: Qm9x3LpZ7rT2vWn8Yk4sHd6J",
        ),
        (
            "kubernetes-secret",
            "kind: Secret\ndata:\n  extra: cGFzc3dvcmQxMjM=\n",
            "kind: Secret\ndata:\n  extra: <redacted>\n",
        ),
        (
            "kubernetes-secret",
            "kind: Secret\ndata:\n  .dockercfg: |\n    eyJhdXRocyI6e30K\n",
            "kind: Secret\ndata:\n  .dockercfg: |\n    <redacted>\n",
        ),
        (
            "kubernetes-secret",
            "kind: ConfigMap\ndata:\n  extra: cGFzc3dvcmQxMjM=\n",
            "kind: ConfigMap\ndata:\n  extra: cGFzc3dvcmQxMjM=\n",
        ),
        (
            "secret-key-value",
            "BUNDLE_GEMS__ACME__COM=deploy:Qm9x3Lp",
            "BUNDLE_GEMS__ACME__COM=<redacted>",
        ),
        (
            "secret-key-value",
            "db_pwd = 'Qm9x3Lp'",
            "db_pwd = '<redacted>'",
        ),
        (
            "secret-key-value",
            "squareToken=sq0x\\Qm9x]3Lp",
            "squareToken=<redacted>",
        ),
        (
            "secret-key-value",
            "not_secret = hello-there",
            "not_secret = hello-there",
        ),
        (
            "secret-key-value",
            "fakeToken := \"Qm9x3LpZ7rT2\"",
            "fakeToken := \"Qm9x3LpZ7rT2\"",
        ),
        (
            "secret-key-value",
            "CREDENTIALS = \"VAULT_DB_CRED\"",
            "CREDENTIALS = \"VAULT_DB_CRED\"",
        ),
        (
            "secret-flag",
            "curl --user ops:'Qm9x3Lp' -X GET",
            "curl --user <redacted> -X GET",
        ),
        (
            "secret-flag",
            "curl -u \"Qm9x3LpZ7rT2:\" x",
            "curl -u <redacted> x",
        ),
    ] {
        check(rule, input, expected);
    }
}

/// Scrubs `event` and checks it becomes `expected`, and that a second scrub changes nothing.
#[track_caller]
fn check_event(event: serde_json::Value, expected: serde_json::Value) {
    let mut scrubbed = event.clone();
    SCRUBBER.scrub_value(&mut scrubbed).unwrap();
    assert_eq!(scrubbed, expected, "on {event}");
    let mut again = scrubbed.clone();
    SCRUBBER.scrub_value(&mut again).unwrap();
    assert_eq!(again, scrubbed, "not idempotent on {event}");
}

/// Secrets that JSON structure hides from the text rules: argument lists, keys named like
/// a secret's, cards as numbers, keys split over source lines or breadcrumbs.
#[test]
fn structured_secrets() {
    use serde_json::json;
    // argv as a list: the value after a secret-looking flag.
    check_event(
        json!({"argv": ["app", "--password", "q7Rk2mVx9Lp", "--verbose"]}),
        json!({"argv": ["app", "--password", "<redacted>", "--verbose"]}),
    );
    check_event(
        json!({"argv": ["curl", "-u", "ops:q7Rk2mVx9Lp", "https://x.test"]}),
        json!({"argv": ["curl", "-u", "<redacted>", "https://x.test"]}),
    );
    check_event(
        json!({"argv": ["app", "--token", "--verbose", "--level", "3"]}),
        json!({"argv": ["app", "--token", "--verbose", "--level", "3"]}),
    );
    // Keys beyond the deny list.
    check_event(
        json!({"otp": "482913", "creds": "q7Rk2mVx9Lp", "x_forwarded_for": "203.0.113.9"}),
        json!({"otp": "<redacted>", "creds": "<redacted>", "x_forwarded_for": "<ip>"}),
    );
    check_event(
        json!({"SIGNING_KEY": "9fQ2xL7pRt4Kw8Zm", "sort_key": "created_at", "otp": "false"}),
        json!({"SIGNING_KEY": "<redacted>", "sort_key": "created_at", "otp": "false"}),
    );
    // Keys that name personal data.
    check_event(
        json!({"first_name": "Ada", "cvv": 123, "dob": "1990-01-02", "display": "x"}),
        json!({"first_name": "<redacted>", "cvv": 0, "dob": "<redacted>", "display": "x"}),
    );
    // A secret's word anywhere in a map key, unless another word qualifies it.
    check_event(
        json!({"a_password_here": "hello", "password_confirmation": "hello", "new_password1": "hello",
               "the_secret": "hello", "password_length": 12, "token_type": "Bearer", "secret_name": "db"}),
        json!({"a_password_here": "<redacted>", "password_confirmation": "<redacted>", "new_password1": "<redacted>",
               "the_secret": "<redacted>", "password_length": 12, "token_type": "Bearer", "secret_name": "db"}),
    );
    // A client's address under its key, loopback included; placeholders stay.
    check_event(
        json!({"user": {"ip_address": "127.0.0.1"}, "env": {"REMOTE_ADDR": "::1"}, "x": {"ip_address": "{{auto}}"}}),
        json!({"user": {"ip_address": "<ip>"}, "env": {"REMOTE_ADDR": "<ip>"}, "x": {"ip_address": "{{auto}}"}}),
    );
    check_event(
        json!({"X-Forwarded-For": "localhost", "X-Real-IP": "203.0.113.9, 10.0.0.2"}),
        json!({"X-Forwarded-For": "<redacted>", "X-Real-IP": "<ip>, <ip>"}),
    );
    // A card stored as a number; other numbers stay.
    check_event(
        json!({"card": 4_111_111_111_111_111_u64, "ts": 1_700_000_000_000_u64}),
        json!({"card": 0, "ts": 1_700_000_000_000_u64}),
    );
    // A key split over a frame's source lines.
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    check_event(
        json!({"frames": [{
            "pre_context": ["const KEY: &str = \"", "-----BEGIN PRIVATE KEY-----"],
            "context_line": body,
            "post_context": [body, "-----END PRIVATE KEY-----", "\";", "fn main() {}"],
        }]}),
        json!({"frames": [{
            "pre_context": ["const KEY: &str = \"", "<secret:private-key>"],
            "context_line": "<secret:private-key>",
            "post_context": ["<secret:private-key>", "-----END PRIVATE KEY-----", "\";", "fn main() {}"],
        }]}),
    );
    // ... and over consecutive breadcrumbs.
    check_event(
        json!({"breadcrumbs": {"values": [
            {"message": "loaded -----BEGIN RSA PRIVATE KEY-----"},
            {"message": body},
            {"message": "connected"},
        ]}}),
        json!({"breadcrumbs": {"values": [
            {"message": "loaded <secret:private-key>"},
            {"message": "<secret:private-key>"},
            {"message": "connected"},
        ]}}),
    );
}

/// Machine names by their shape, and short or common names only where they stand as a
/// user or host.
#[test]
fn names_by_shape_and_position() {
    for (rule, input, expected) in [
        (
            "hostname-shape",
            "built on DESKTOP-7QK2M4Z today",
            "built on <hostname> today",
        ),
        ("hostname-shape", "ping bobs-MBP.lan", "ping <hostname>"),
        (
            "hostname-shape",
            "from Bobs-MacBook-Pro.local.",
            "from <hostname>.",
        ),
        ("hostname-shape", "bob-thinkpad: up", "<hostname>: up"),
        ("hostname-shape", "printer.local", "<hostname>"),
        (
            "hostname-shape",
            "db.svc.cluster.local",
            "db.svc.cluster.local",
        ),
        (
            "hostname-shape",
            "see settings.local.json",
            "see settings.local.json",
        ),
        ("hostname-shape", "signal-desktop 7.1", "signal-desktop 7.1"),
        ("hostname-shape", "WS-Federation", "WS-Federation"),
    ] {
        check(rule, input, expected);
    }
    for (rule, input, expected) in [
        (
            "user-position",
            r#"password authentication failed for user "dbadmin7""#,
            r#"password authentication failed for user "<user>""#,
        ),
        (
            "user-position",
            "logged in as 'Мария'",
            "logged in as '<user>'",
        ),
        (
            "user-position",
            "user input was empty",
            "user input was empty",
        ),
        ("user-position", r#"user: {"id": 1}"#, r#"user: {"id": 1}"#),
    ] {
        check(rule, input, expected);
    }
    let scrubber = Scrubber::builder()
        .user("root")
        .hostname("vm")
        .build()
        .unwrap();
    for (rule, input, expected) in [
        (
            "user-name",
            "permission denied for root on vm",
            "permission denied for <user> on <hostname>",
        ),
        (
            "user-at-host",
            "ssh root@vm failed",
            "ssh <user>@<hostname> failed",
        ),
        ("user-name", "running as root", "running as <user>"),
        ("user-name", "user 'root' unknown", "user '<user>' unknown"),
        ("hostname", "host=vm", "host=<hostname>"),
        ("user-name", "the root cause", "the root cause"),
        ("hostname", "a vm image", "a vm image"),
    ] {
        check_with(&scrubber, rule, input, expected);
    }
}

/// User names in other scripts: in home paths, `file://` URLs, and learned from them.
#[test]
fn names_in_other_scripts() {
    for (rule, input, expected) in [
        ("home-path", "/home/张伟/src/x.rs", "/home/<user>/src/x.rs"),
        (
            "home-path",
            r"C:\Users\Иван\AppData\x",
            r"C:\Users\<user>\AppData\x",
        ),
        (
            "home-path",
            "/Users/محمد/Library/x",
            "/Users/<user>/Library/x",
        ),
        (
            "home-path",
            "file:///home/%E5%BC%A0%E4%BC%9F/x",
            "file:///home/<user>/x",
        ),
        (
            "user-name",
            "/home/Иван/x: permission denied for Иван",
            "/home/<user>/x: permission denied for <user>",
        ),
        (
            "user-name",
            "/home/李小龙/x: 李小龙 不能打开",
            "/home/<user>/x: <user> 不能打开",
        ),
        (
            "user-name",
            "/home/张伟/x: 张伟 不能打开",
            "/home/<user>/x: <user> 不能打开",
        ),
    ] {
        check(rule, input, expected);
    }
}

/// What debugging needs stays: ids, hashes, versions, durations, structured keys.
#[test]
fn debugging_values_stay() {
    for kept in [
        "thread 'tokio-runtime-worker' panicked at src/main.rs:42:5",
        "commit: 3f786850e387550fdab836ed7e6dc881de23001b",
        "build_id=8f3e2a1b9c7d6e5f4a3b2c1d0e9f8a7b",
        "trace_id: 4bf92f3577b34da6a3ce929d0e0e4736",
        "event 0f8e2c4a-1b3d-4e5f-9a8b-7c6d5e4f3a2b dropped",
        "release: myapp@1.4.2+build.2024",
        "Duration { secs: 30, nanos: 0 }",
        "cache_key: \"user:42:profile\"",
        "partition_key = orders-2024-eu",
        "sort_key=created_at",
        "at 0x7ffd5c2a1b40 in libfoo.so",
        "digest: sha256:3b1f0e2a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f",
        "symbol _ZN4core3fmt5write17h5c1e1c0d3f2a9b8eE",
        "KeyError: 'api_key'",
        "token_count=1500 max_tokens=4096",
        "password: false",
        "unexpected token: identifier",
    ] {
        keep(kept);
    }
}

/// National identity numbers: made-up values with valid check digits, and near misses.
#[test]
fn national_ids() {
    for (input, expected) in [
        ("NINO JK 12 34 56 A", "NINO <national-id>"),
        ("NINO JK123456A", "NINO <national-id>"),
        ("NINO GB 12 34 56 A", "NINO GB 12 34 56 A"),
        ("ITIN 912-70-1234", "ITIN <national-id>"),
        ("ITIN 912-40-1234", "ITIN 912-40-1234"),
        ("SIN 130 729 809", "SIN <national-id>"),
        ("SIN 130 729 808", "SIN 130 729 808"),
        ("aadhaar 3827 1645 9022", "aadhaar <national-id>"),
        ("aadhaar 3827 1645 9021", "aadhaar 3827 1645 9021"),
        ("PAN ABCPE1234F", "PAN <national-id>"),
        ("HETU 150377-418E", "HETU <national-id>"),
        ("HETU 150377-418F", "HETU 150377-418F"),
        ("pnr 870215-3126", "pnr <national-id>"),
        ("pnr 870215-3127", "pnr 870215-3127"),
        ("RRN 870215-1234565", "RRN <national-id>"),
        ("RRN 870215-1234566", "RRN 870215-1234566"),
        ("NIF 73925816K", "NIF <national-id>"),
        ("NIE Y4829173S", "NIE <national-id>"),
        ("NIF 73925816A", "NIF 73925816A"),
        ("CF VRDGPP80E22H501J", "CF <national-id>"),
        ("CF VRDGPP80E22H501K", "CF VRDGPP80E22H501K"),
        ("NHS 401 023 2137", "NHS <national-id>"),
        ("NHS 401 023 2138", "NHS 401 023 2138"),
        ("at 20240115Z", "at 20240115Z"),
    ] {
        check("national-id", input, expected);
    }
}

#[test]
fn passwords_in_sql_and_database_client_command_lines() {
    for (input, expected) in [
        (
            "ALTER USER bob WITH PASSWORD 'hunter22xyz'",
            "ALTER USER bob WITH PASSWORD <redacted>",
        ),
        (
            r#"ALTER LOGIN app IDENTIFIED BY "s3cr3t-pw";"#,
            "ALTER LOGIN app IDENTIFIED BY <redacted>;",
        ),
        ("set password = 'Zq9vX2pL'", "set password = <redacted>"),
        // SQL's doubled quote, and the other quote inside.
        (
            "IDENTIFIED BY 'p''ssw0rdTail9';",
            "IDENTIFIED BY <redacted>;",
        ),
        (
            r#"IDENTIFIED BY 'ab"cdSecretTail9'"#,
            "IDENTIFIED BY <redacted>",
        ),
    ] {
        check("sql-password", input, expected);
    }
    for (input, expected) in [
        (
            "mysql -u app -phunter22xyz db",
            "mysql -u app -p<redacted> db",
        ),
        (
            "mysqldump -pZq9vX2pL db > x",
            "mysqldump -p<redacted> db > x",
        ),
        (
            "mysql -h db -P 3306 -u root -p'S3cr3t Pass' db",
            "mysql -h db -P 3306 -u root -p<redacted> db",
        ),
        (
            r#"mysql --host=db -p"S3cr3tPass""#,
            "mysql --host=db -p<redacted>",
        ),
        (
            "sshpass -p hunter22xyz ssh host",
            "sshpass -p <redacted> ssh host",
        ),
        (
            "sshpass -p 'S3cr3tPass' ssh host",
            "sshpass -p <redacted> ssh host",
        ),
    ] {
        check("client-password-flag", input, expected);
    }
    // A placeholder, a prompt for one, a port, prose: nothing to remove.
    keep("WITH PASSWORD '***'");
    keep("mysql -u app -p db");
    keep("mysql -u app -P 3306 db");
    keep("mysql backup for db1 -prod cluster");
}

/// A scrubber that knows nothing of the machine: what an event teaches is all there is.
fn blank() -> Scrubber {
    Scrubber::builder().build().unwrap()
}

#[track_caller]
fn event(input: serde_json::Value) -> String {
    let mut event = input;
    blank().scrub_value(&mut event).unwrap();
    event.to_string()
}

#[test]
fn what_an_event_says_about_its_user_and_machine_is_removed_everywhere() {
    // Sentry's `user.name`, and that name elsewhere.
    let out = event(serde_json::json!({
        "user": {"id": "7", "name": "Karen Brown"}, "message": "Karen Brown clicked"
    }));
    assert!(!out.contains("Karen"), "{out}");
    // Tags and environments as lists of pairs teach what maps do.
    let out = event(serde_json::json!({
        "tags": [["server_name", "web01.example.org"], ["hostname", "zeus-prod-3"], ["user", "kbrown"]],
        "request": {"env": [["HOSTNAME", "atlas-build-9"]]},
        "message": "zeus-prod-3 atlas-build-9 web01 kbrown"
    }));
    for name in ["zeus", "atlas", "web01", "kbrown"] {
        assert!(!out.contains(name), "{name}: {out}");
    }
    // `USER`, `LOGNAME` and `user` entries name a user.
    let out = event(serde_json::json!({
        "request": {"env": {"LOGNAME": "kbrown"}}, "extra": {"user": "dcramer"},
        "message": "kbrown and dcramer: permission denied"
    }));
    assert!(!out.contains("kbrown") && !out.contains("dcramer"), "{out}");
    // A home path that ends the string or a field teaches its user.
    for text in [
        "cannot chdir to /home/karenbrown as karenbrown",
        "kbrown:x:1000:1000::/home/kbrown:/bin/bash",
    ] {
        let out = event(serde_json::json!({ "message": text }));
        assert!(!out.contains("brown"), "{out}");
    }
    // ... but a web route does not make its last word a user.
    let out = event(serde_json::json!({
        "message": "GET /home/dashboard ok; https://example.com/home/about; dashboard, about"
    }));
    assert!(out.contains("dashboard, about"), "{out}");
    // Device names in any device context and in tags; `uname -a` output.
    let out = event(serde_json::json!({
        "contexts": {
            "client": {"type": "device", "name": "katherines-iphone"},
            "os": {"raw_description": "Linux kbrown-dev 6.5.0-1 #1 SMP x86_64"}
        },
        "tags": {"device.name": "Katherine's iPhone"},
        "message": "katherines-iphone on kbrown-dev"
    }));
    assert!(
        !out.contains("katherine") && !out.contains("Katherine") && !out.contains("kbrown"),
        "{out}"
    );
    // A user's folder on a file share.
    let out = event(serde_json::json!({ "message": r"\\filesrv01\home$\jsmith\doc.txt" }));
    assert!(
        !out.contains("jsmith") && !out.contains("filesrv01"),
        "{out}"
    );
}

#[test]
fn log_entry_parameters_are_scrubbed_in_their_message() {
    let out = event(serde_json::json!({
        "logentry": {"message": "login failed, password=%s", "params": ["hunter22xyz"]},
        "message": {"message": "token=%(tok)s, 100%% done", "params": {"tok": "Zq9vX2pL8mN4Kd7R"}}
    }));
    assert!(
        !out.contains("hunter22xyz") && !out.contains("Zq9vX2pL8mN4Kd7R"),
        "{out}"
    );
    assert!(
        out.contains(r#""formatted":"login failed, password=<redacted>""#),
        "{out}"
    );
    assert!(out.contains("100% done"), "{out}");
    assert!(!out.contains("params"), "{out}");
}

#[test]
fn card_numbers_as_json_floats() {
    let out = event(serde_json::json!({
        "extra": {"a": 4111111111111111.0_f64, "b": 4.111111111111111e15_f64, "c": 12.5}
    }));
    assert!(!out.contains("411111"), "{out}");
    assert!(out.contains("12.5"), "{out}");
}

#[test]
fn national_phone_numbers_in_spaced_groups_after_a_phone_word() {
    check(
        "phone-national",
        "phone: 020 7946 0958, tel 06 12 34 56 78",
        "phone: <phone>, tel <phone>",
    );
    // Without a word saying what they are, spaced digits are counts, ids, times.
    keep("took 020 7946 0958 ms; ids 06 12 34 56 78");
    // Bare mobile numbers, after a word saying what they are.
    check(
        "phone-national",
        "SMS to 07911123456 failed",
        "SMS to <phone> failed",
    );
    check("phone-national", "mobile: 9876543210", "mobile: <phone>");
    keep("took 9876543210 ns; id 0123456789; ts 1700000000");
}

#[test]
fn password_keys_in_other_languages() {
    for key in [
        "passwort",
        "Kennwort",
        "mot_de_passe",
        "contraseña",
        "senha",
        "пароль",
        "密码",
    ] {
        check_key(
            key,
            serde_json::json!("geheim-42"),
            serde_json::json!("<redacted>"),
        );
    }
}

#[test]
fn learning_takes_no_field_list_or_kernel_banner_for_a_name() {
    // `/proc/version` and prose name no machine; lists of field names name no user.
    let out = event(serde_json::json!({
        "message": "Linux version 6.5 built; Linux kernel 6.5.0 released; version 2 kernel",
        "columns": ["username", "email"], "pair": ["user", "token"],
        "extra": {"user": "anonymous"},
        "text": "token and email and anonymous access"
    }));
    assert!(
        out.contains("Linux version 6.5 built; Linux kernel 6.5.0"),
        "{out}"
    );
    assert!(
        out.contains("token and email and anonymous access"),
        "{out}"
    );
}

#[test]
fn passwords_of_command_line_clients_in_argument_lists_and_other_tools() {
    for (input, expected) in [
        (
            "Command '['mysql', '-u', 'root', '-pXk9pQ2mZ7wLr']' returned 1",
            "Command '['mysql', '-u', 'root', '-p<redacted>']' returned 1",
        ),
        (
            "Cannot run program [mysql, -u, root, -pXk9pQ2mZ7wLr]",
            "Cannot run program [mysql, -u, root, -p<redacted>]",
        ),
        (
            "docker login -u jdoe -p Ab3dE6gH9jK2mN5 registry.corp",
            "docker login -u jdoe -p <redacted> registry.corp",
        ),
        (
            "['redis-cli', '-a', 'Xk9pQ2mZ7wLr', 'ping']",
            "['redis-cli', '-a', '<redacted>', 'ping']",
        ),
        (
            "ldapsearch -x -D cn=admin -w Xk9pQ2mZ7wLr -b dc=x",
            "ldapsearch -x -D cn=admin -w <redacted> -b dc=x",
        ),
        (
            "keytool -list -storepass Xk9pQ2mZ7wLr",
            "keytool -list -storepass <redacted>",
        ),
        ("zip -P Xk9pQ2mZ7wLr a.zip d", "zip -P <redacted> a.zip d"),
        ("7z a -pXk9pQ2mZ7wLr x.7z", "7z a -p<redacted> x.7z"),
    ] {
        check("client-password-flag", input, expected);
    }
    keep("docker login registry; zip -r a.zip dir; ls -p x");
    check(
        "oracle-credentials",
        "logon denied (url=jdbc:oracle:thin:scott/Tiger123@//db:1521/ORCL)",
        "logon denied (url=jdbc:oracle:thin:scott/<redacted>@//db:1521/ORCL)",
    );
    check(
        "oracle-credentials",
        "sqlplus system/Manager123@ORCL",
        "sqlplus system/<redacted>@ORCL",
    );
    check(
        "netrc-password",
        "machine api.corp.com login jdoe password Xk9pQ2mZ7wLr4",
        "machine api.corp.com login jdoe password <redacted>",
    );
    // The same flags in argument lists (a frame's variables, a subprocess's arguments).
    let out = event(serde_json::json!({
        "a": ["sshpass", "-p", "Xk9pQ2mZ7wLr", "ssh", "host"],
        "b": ["/usr/bin/mysql", "-u", "root", "-pXk9pQ2mZ7wLr"],
        "c": ["docker", "login", "-u", "x", "-p", "Ab3dE6gH9jK2"],
        "d": ["ls", "-p", "kept-as-is"]
    }));
    assert!(
        !out.contains("Xk9pQ2mZ7wLr") && !out.contains("Ab3dE6gH9jK2"),
        "{out}"
    );
    assert!(out.contains("kept-as-is"), "{out}");
}

#[test]
fn personal_data_and_session_keys() {
    for key in [
        "phone",
        "phoneNumber",
        "msisdn",
        "telephone",
        "surname",
        "forename",
        "drivers_license_number",
        "security_code",
        "JSESSIONID",
        "pw",
    ] {
        check_key(
            key,
            serde_json::json!("x-4155550132"),
            serde_json::json!("<redacted>"),
        );
    }
    let out = event(serde_json::json!({
        "url": "https://app.example.com/cart;jsessionid=8F3A2B1C9D8E7F6A5B4C3D2E1F0A9B8C"
    }));
    assert!(!out.contains("8F3A2B1C"), "{out}");
}

#[test]
fn windows_accounts() {
    check(
        "windows-sid",
        "access denied for S-1-5-21-3623811015-3361044348-30300820-1013",
        "access denied for <sid>",
    );
    check(
        "windows-sid",
        "run as S-1-5-18 (LocalSystem)",
        "run as S-1-5-18 (LocalSystem)",
    );
    check(
        "domain-account",
        r"logon failure for CORP\mwilliams on server",
        r"logon failure for <user> on server",
    );
    check("domain-account", r"User: corp\mwilliams", "User: <user>");
    check(
        "domain-account",
        r#"{"owner": "CORP\\jdoe"}"#,
        r#"{"owner": "<user>"}"#,
    );
    check(
        "domain-account",
        r"logged in as desktop-7k2\kim",
        r"logged in as desktop-7k2\kim",
    );
    check(
        "domain-account",
        r"logged in as DESKTOP-7K2\kim",
        r"logged in as <user>",
    );
    for kept in [
        r"service runs as NT AUTHORITY\SYSTEM",
        r"owner BUILTIN\Administrators",
        r"access denied for HKLM\SOFTWARE\Vendor",
        r"waiting for HKEY_LOCAL_MACHINE\x",
        r"saved as reports\q3.csv",
        r"failed for ERROR\nCaused by",
        r"user: CORP\team\share",
        r"account: IIS APPPOOL\DefaultAppPool",
    ] {
        check("domain-account", kept, kept);
    }
}

#[test]
fn user_at_host() {
    check(
        "user-at-host",
        "mwilliams@buildbox:~/src$ cargo run",
        "<user>@<hostname>:~/src$ cargo run",
    );
    check(
        "user-at-host",
        "[mwilliams@buildbox src]$ make",
        "[<user>@<hostname> src]$ make",
    );
    check(
        "user-at-host",
        "key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq mwilliams@laptop-7 rejected",
        "key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMq <user>@<hostname> rejected",
    );
    for kept in [
        "git@github.com:org/repo.git and git@gitlab:/srv/repo",
        "see icon@2x.png",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 <comment>",
    ] {
        check("user-at-host", kept, kept);
    }
}

#[test]
fn secrets_in_prose() {
    check(
        "secret-word-value",
        "auth with token 8f3a9b2c7d1e4f5a6b7c8d9e0f1a2b3c failed",
        "auth with token <redacted> failed",
    );
    check(
        "secret-word-value",
        "the API key is AKx9QpL2mZ7vW4rT8sN3bY6 now",
        "the API key is <redacted> now",
    );
    check(
        "twilio-key",
        "twilio key SK2c9e4d1f0a8b7c6d5e4f3a2b1c0d9e8f rejected",
        "twilio key <secret:token> rejected",
    );
    check(
        "connection-string",
        "Server=db;User Id=sa;Password={pa;ss;w0rd};Encrypt=true",
        "Server=db;User Id=<redacted>;Password=<redacted>;Encrypt=true",
    );
    check(
        "connection-string",
        "Server=db1;Uid=mkowalski;Pwd=abc&def;Database=app",
        "Server=db1;Uid=<redacted>;Pwd=<redacted>;Database=app",
    );
    check(
        "connection-string",
        "Data Source=db;Initial Catalog=app;Integrated Security=true;",
        "Data Source=db;Initial Catalog=app;Integrated Security=true;",
    );
    check(
        "secret-query-param",
        "https://x.example/cart;Password={pa;ss;w0rd};Encrypt=true",
        "https://x.example/cart;Password=<redacted>;Encrypt=true",
    );
    check(
        "connection-string",
        "Password={pa;ss;w0rd};Server=db",
        "Password=<redacted>;Server=db",
    );
    check(
        "secret-key-value",
        "login with password={pa;ss;w0rd} rejected",
        "login with password=<redacted> rejected",
    );
    check(
        "secret-key-value",
        r#"password: {"type": "string"}"#,
        r#"password: {"type": "string"}"#,
    );
    check(
        "multipart-field",
        "--b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter2secret\r\n--b",
        "--b\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n<redacted>\r\n--b",
    );
    check(
        "multipart-field",
        r#"Content-Disposition: form-data; name=\"api_key\"\r\n\r\nk3y-Xy9\r\n"#,
        r#"Content-Disposition: form-data; name=\"api_key\"\r\n\r\n<redacted>\r\n"#,
    );
    check(
        "multipart-field",
        "Content-Disposition: form-data; name=\"comment\"\r\n\r\nhello there\r\n",
        "Content-Disposition: form-data; name=\"comment\"\r\n\r\nhello there\r\n",
    );
    for kept in [
        "token refresh_endpoint_configuration failed",
        "password reset requested for the account",
        "secret rotation scheduled 2026-11-30T10:00:00Z",
        "token 12345678901234567890 expired",
    ] {
        check("secret-word-value", kept, kept);
    }
}

#[test]
fn shapes_found_in_other_ecosystems_crash_reports() {
    check(
        "password-hash",
        "UPDATE users SET password_hash = '$2b$12$KIXQJ1rY3P1Qd9vZ3u5uOe7Q1o9b2Yf0m1c8Zk2d3e4f5g6h7i8j9' WHERE id = 4",
        "UPDATE users SET password_hash = '<secret:password-hash>' WHERE id = 4",
    );
    check(
        "password-hash",
        "jdoe:$6$rounds=5000$saltsalt$Xq0vKb8wQ7lV2u9rT4sN3bY6pL1mZ7vW4rT8sN3bY6pL1mZ7vW4rT8sN3bY6pL1mZ7vW4rT8sN3bY6pL1m:19000:0",
        "jdoe:<secret:password-hash>:19000:0",
    );
    check(
        "password-hash",
        "h=$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA end",
        "h=<secret:password-hash> end",
    );
    check(
        "password-hash",
        "costs $2 and $6 each",
        "costs $2 and $6 each",
    );
    check(
        "redis-auth",
        "redis AUTH default Xk9mQ2vL7pR4",
        "redis AUTH default <redacted>",
    );
    check("redis-auth", "AUTH Xk9mQ2vL7pR4aB3c", "AUTH <redacted>");
    check(
        "redis-auth",
        "AUTH failed: WRONGPASS",
        "AUTH failed: WRONGPASS",
    );
    check(
        "secret-label-intl",
        "Passwort: Winter2024 | senha=Inverno2024 | пароль: Zima2024 | 密码：Dong2024",
        "Passwort: <redacted> | senha=<redacted> | пароль: <redacted> | 密码：<redacted>",
    );
    check(
        "secret-label-intl",
        "contraseña = Invierno2024; mot de passe: Hiver2024",
        "contraseña = <redacted>; mot de passe: <redacted>",
    );
    check(
        "secret-label-intl",
        "Passwort: <redacted>",
        "Passwort: <redacted>",
    );
    check(
        "sql-key-detail",
        "DETAIL: Key (username)=(mkowalski) already exists.",
        "DETAIL: Key (username)=(<redacted>) already exists.",
    );
    check(
        "sql-key-detail",
        "Key (user_id)=(42) is not present in table \"users\".",
        "Key (user_id)=(42) is not present in table \"users\".",
    );
    check(
        "cloud-principal",
        "User: arn:aws:iam::123456789012:user/jsmith is not authorized",
        "User: arn:aws:iam::123456789012:user/<user> is not authorized",
    );
    check(
        "cloud-principal",
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_x/priya.patel denied",
        "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_x/<user> denied",
    );
    check(
        "cloud-principal",
        "bind for CN=John Smith,OU=Users,DC=corp,DC=acme,DC=com; uid=jdoe,ou=people,dc=example,dc=com",
        "bind for CN=<user>,OU=Users,DC=corp,DC=acme,DC=com; uid=<user>,ou=people,dc=example,dc=com",
    );
    check(
        "user-in-log",
        "Failed password for invalid user mkowalski from <ip> port 51234 ssh2",
        "Failed password for invalid user <user> from <ip> port 51234 ssh2",
    );
    check(
        "user-in-log",
        "pam_unix(sshd:session): session opened for user kpatel(uid=1000) by (uid=0)",
        "pam_unix(sshd:session): session opened for user <user>(uid=1000) by (uid=0)",
    );
    check("user-in-log", "Logged in as jdoe.", "Logged in as <user>.");
    check(
        "user-at-address",
        "connect jdoe@10.0.4.17 refused",
        "connect <user>@<ip> refused",
    );
    check("ipv4", "git@10.0.4.17:repo", "git@<ip>:repo");
    // Left alone: a .NET assembly's public key token, and MongoDB's error text.
    for kept in [
        "Could not load file or assembly 'Newtonsoft.Json, Version=13.0.0.0, Culture=neutral, PublicKeyToken=30ad4fe6b2a6aeed'",
        "MongoServerError: bad auth : Authentication failed.",
    ] {
        check("secret-key-value", kept, kept);
    }
    check(
        "secret-key-value",
        "password : hunter",
        "password : <redacted>",
    );
    check(
        "hostname-shape",
        "No such host is known. (JANE-LAPTOP.corp.acme.com:443) DESKTOP-AB12CD3.corp.acme.com",
        "No such host is known. (<hostname>:443) <hostname>",
    );
    check(
        "hostname-shape",
        "Computer: JDOE-PC; jdoe-ThinkPad-T480; jdoe-VirtualBox; kim-Inspiron-5570 up",
        "Computer: <hostname>; <hostname>; <hostname>; <hostname> up",
    );
    for kept in [
        "target i686-pc-windows-msvc and x86_64-pc-windows-gnu",
        "gps-latitude out of range; double-precision; load WS-2019.dll",
        "xdg-desktop-portal and docker-desktop",
    ] {
        check("hostname-shape", kept, kept);
    }
    check(
        "windows-event-account",
        "Subject:\n\tAccount Name:\t\tjdoe\n\tAccount Domain:\t\tACME\n\tWorkstation Name:\tFIN-WS-0231\n",
        "Subject:\n\tAccount Name:\t\t<user>\n\tAccount Domain:\t\tACME\n\tWorkstation Name:\t<user>\n",
    );
    check(
        "personal-pair",
        "{'full_name': 'Jane Doe', 'first_name': 'Jane', 'date_of_birth': '1985-04-12', 'id': 7}",
        "{'full_name': '<redacted>', 'first_name': '<redacted>', 'date_of_birth': '<redacted>', 'id': 7}",
    );
    check(
        "personal-pair",
        r#"payload "{\"user\":{\"phoneNumber\":\"+1 (415) 555\",\"lastName\":\"Doe\"}}""#,
        r#"payload "{\"user\":{\"phoneNumber\":\"<redacted>\",\"lastName\":\"<redacted>\"}}""#,
    );
    for kept in [
        "{'name': 'parser', 'display': 'x', 'username': ''}",
        "fields ['first_name', 'last_name'] and {'phone': None}",
    ] {
        check("personal-pair", kept, kept);
    }
    check(
        "secret-query-param",
        r#"{\"url\":\"https://api.example.com/v1?x\u003d1\u0026access_token\u003dZx9Yw8Vu7Ts6Rq5Po4Nm3Lk\"}"#,
        r#"{\"url\":\"https://api.example.com/v1?x\u003d1\u0026access_token\u003d<redacted>\"}"#,
    );
    check(
        "url-credentials-encoded",
        "dsn=postgres%3A%2F%2Fapp%3AWinter2024%21%40db%3A5432%2Fprod",
        "dsn=postgres%3A%2F%2F<redacted>%40db%3A5432%2Fprod",
    );
    check(
        "url-credentials-encoded",
        "next=https%3A%2F%2Fexample.com%2Fa%3Ab%40c",
        "next=https%3A%2F%2Fexample.com%2Fa%3Ab%40c",
    );
    check(
        "national-id",
        "CPF 529.982.247-25 and 123.456.789-00",
        "CPF <national-id> and 123.456.789-00",
    );
    check(
        "id-output",
        "uid=1000(jdoe) gid=1000(jdoe) groups=1000(jdoe),27(sudo),998(kpatel)",
        "uid=1000(<user>) gid=1000(<user>) groups=1000(<user>),27(sudo),998(<user>)",
    );
    check(
        "id-output",
        "uid=0(root) gid=0(root)",
        "uid=0(root) gid=0(root)",
    );
    check(
        "user-at-host",
        "ssh: connect as kpatel@bastion: Authentication failed; scp x jdoe@build01:/tmp",
        "ssh: connect as <user>@<hostname>: Authentication failed; scp x <user>@<hostname>:/tmp",
    );
    check(
        "user-at-host",
        "npm install as react@18 and ssh git@github",
        "npm install as react@18 and ssh git@github",
    );
    check(
        "phone-national",
        "phone: 07700 900123; Rufnummer 030 12345678",
        "phone: <phone>; Rufnummer <phone>",
    );
    check(
        "phone-national",
        "took 01234 567890 ms",
        "took 01234 567890 ms",
    );
    check(
        "windows-event-account",
        "Account Name: SYSTEM Account Name: - ",
        "Account Name: SYSTEM Account Name: - ",
    );
    check(
        "vendor-token",
        "sbp_1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b and lin_api_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Jh1Gf0EdCcBbAaZzYy11",
        "<secret:token> and <secret:token>",
    );
}

/// Debugging content that looks like the shapes above and stays (found by probing the new
/// rules with other crash reports).
#[test]
fn lookalikes_of_accounts_hosts_and_addresses_stay() {
    for kept in [
        // Rust's Debug strings with escapes; directories.
        r#"Custom { kind: Other, error: "timeout waiting for IO\nretrying later" }"#,
        r"expected value for DB\nat line 1; checking for GCC\bin; owner: app\nstatus",
        // English and structured fields.
        "invalid user input: missing field `name`; Illegal user agent string",
        "user=self.id msg=hi; user=42",
        // Machine addresses under personal-looking names.
        r#"bad config: {"address": "127.0.0.1:8080"} {'address': '0x7ffd5e8c1a20'} {'login': 'failed'}"#,
        // Certificate subjects.
        r#"TLS error: subject "CN=localhost,O=Dev" mismatch; issuer CN=R3,O=Let's Encrypt,C=US"#,
        // Connection-string-like prose.
        "connection failed: host=localhost port=5432 user=postgres dbname=app; retrying",
        "Client Name: N/A; Client Name: reqwest; Storage Account Name: devstoreaccount1",
        // Package versions and service users in URLs.
        "at (webpack://app@1.2.3/src/index.js:10:5) redis://default@cache:6379 postgres://postgres@db/x",
        // SMTP capabilities and protocol states.
        "250-AUTH SCRAM-SHA-256 PLAIN; state=AUTH next=HandshakeV2",
        // Machine types and .NET frames.
        "BIOS: IBM-PC compatible; at CONTOSO-PC.Program.Main(); xdg-Surface-0",
        // Hex after words that hold a phone word inside.
        "RefCell<Vec<u8>> bytes: 00 12 34 56 78 ff; syscall 0700 900123",
        // Encoded URLs without credentials.
        "redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb%3Fx%3D1%40y",
        // Containers.
        "root@3f2a1b9c8d7e:/app# cargo run",
    ] {
        let (out, _) = SCRUBBER.scrub_text(kept).unwrap();
        assert_eq!(out, kept);
    }
    // And what must still go beside them.
    for (input, expected) in [
        (
            "dialing /ip4/203.0.113.7/tcp/4001; db.internal/203.0.113.7:5432; host 192.168.1.0:8080",
            "dialing /ip4/<ip>/tcp/4001; db.internal/<ip>:5432; host <ip>:8080",
        ),
        (
            "DETAIL: Key (lower(username::text))=(jdoe) already exists.",
            "DETAIL: Key (lower(username::text))=(<redacted>) already exists.",
        ),
        (
            "DETAIL: Key (id)=(-1) is not present in table",
            "DETAIL: Key (id)=(-1) is not present in table",
        ),
        (
            "redis> AUTH Sup3rS3cret failed",
            "redis> AUTH <redacted> failed",
        ),
        // An Erlang node's name is no person's; its address goes.
        (
            "connected to node rabbit@10.0.0.12",
            "connected to node rabbit@<ip>",
        ),
        (r#""AUTH" "Sup3rS3cret""#, r#""AUTH" "<redacted>""#),
        (
            "logged in as JSmith; Disconnected from user jdoe 1.2.3.4",
            "logged in as <user>; Disconnected from user <user> <ip>",
        ),
        (
            "Invalid user Admin from 81.2.69.160",
            "Invalid user <user> from <ip>",
        ),
    ] {
        let (out, _) = SCRUBBER.scrub_text(input).unwrap();
        assert_eq!(out, expected, "{input}");
    }
}
