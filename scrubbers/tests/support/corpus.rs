//! A deterministic generator of Sentry-style crash events from Linux, macOS, Windows and WSL,
//! shared by the leak test (`tests/leak.rs`) and the bench (`benches/scrub.rs`) through
//! `#[path]` includes.
//!
//! Two kinds of events:
//! - [`realistic_event`]: what a crash reporter sends, mostly clean strings with some PII,
//!   for measuring throughput;
//! - [`planted_event`]: PII planted in every field kind, with the list of planted values
//!   (none may survive scrubbing) and of values that must survive.
#![allow(dead_code)]

use consentry_scrubbers::{Scrubber, ScrubberBuilder};
use serde_json::{Map, Value, json};

/// The running user of the generated machine.
pub const USER: &str = "alice";
pub const FULL_NAME: &str = "Alice Liddell";
pub const HOSTNAME: &str = "alice-laptop.corp.example";
/// Secrets in the generated machine's environment.
pub const ENV_SECRETS: &[(&str, &str)] = &[
    ("DEPLOY_TOKEN", "dpl-7f3a9c2e1b8d4f60"),
    ("DB_PASSWORD", "Sup3r-S3cret-Pa55"),
    // A plain word: chased because the name says password.
    ("SMTP_PASSWORD", "sunshine"),
    (
        "DATABASE_URL",
        "postgres://app:pg-Hunter-2024@db.internal:5432/app",
    ),
];

/// The scrubber the tests and the bench use: identities of the running user, a realistic
/// environment, a salt.
pub fn builder() -> ScrubberBuilder {
    let mut env: Vec<(String, String)> = ENV_SECRETS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in [
        ("USER", USER),
        ("HOME", "/home/alice"),
        ("LANG", "en_US.UTF-8"),
        ("RUST_LOG", "info,my_app=debug"),
        ("XDG_SESSION_TYPE", "wayland"),
        ("XDG_SESSION_CLASS", "user"),
        ("SHELL", "/bin/bash"),
        (
            "PATH",
            "/home/alice/.cargo/bin:/usr/local/bin:/usr/bin:/bin",
        ),
        ("TERM", "xterm-256color"),
        ("SSH_AUTH_SOCK", "/run/user/1000/keyring/ssh"),
    ] {
        env.push((k.to_owned(), v.to_owned()));
    }
    Scrubber::builder()
        .user(USER)
        .full_name(FULL_NAME)
        .hostname(HOSTNAME)
        .home_dir("/home/alice")
        .env_vars(env)
        .salt(b"0123456789abcdef")
}

/// SplitMix64: small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }

    pub fn alnum(&mut self, len: usize) -> String {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| char::from(*self.pick(CHARS))).collect()
    }

    pub fn digits(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(10) as u32, 10).unwrap())
            .collect()
    }

    pub fn uuid(&mut self) -> String {
        format!(
            "{}-{}-4{}-a{}-{}",
            self.hex(8),
            self.hex(4),
            self.hex(3),
            self.hex(3),
            self.hex(12)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    Mac,
    Windows,
    Wsl,
}

pub const ALL_OS: [Os; 4] = [Os::Linux, Os::Mac, Os::Windows, Os::Wsl];

/// How an OS spells a home directory and the separator after it.
fn home_of(os: Os, user: &str) -> (String, char) {
    match os {
        Os::Linux | Os::Wsl => (format!("/home/{user}"), '/'),
        Os::Mac => (format!("/Users/{user}"), '/'),
        Os::Windows => (format!("C:\\Users\\{user}"), '\\'),
    }
}

fn join(home: &str, sep: char, rest: &str) -> String {
    let rest = if sep == '\\' {
        rest.replace('/', "\\")
    } else {
        rest.to_owned()
    };
    format!("{home}{sep}{rest}")
}

/// Crates and files that appear in stack frames; kept by scrubbing.
const CRATES: &[(&str, &str, &str)] = &[
    (
        "tokio-1.40.0",
        "src/runtime/park.rs",
        "tokio::runtime::park::CachedParkThread::block_on",
    ),
    (
        "serde_json-1.0.128",
        "src/de.rs",
        "serde_json::de::from_trait",
    ),
    (
        "serde-1.0.219",
        "src/de/mod.rs",
        "serde::de::Deserialize::deserialize",
    ),
    (
        "hyper-1.4.1",
        "src/client/conn/http1.rs",
        "hyper::client::conn::http1::SendRequest<B>::send_request",
    ),
    (
        "reqwest-0.12.7",
        "src/async_impl/client.rs",
        "reqwest::async_impl::client::Client::execute",
    ),
    (
        "clap_builder-4.5.17",
        "src/parser/parser.rs",
        "clap_builder::parser::parser::Parser::get_matches_with",
    ),
    (
        "anyhow-1.0.89",
        "src/error.rs",
        "anyhow::error::<impl anyhow::Error>::msg",
    ),
    (
        "rusqlite-0.32.1",
        "src/statement.rs",
        "rusqlite::statement::Statement::query_row",
    ),
];

const STD_FRAMES: &[(&str, &str)] = &[
    (
        "library/std/src/panicking.rs",
        "std::panicking::begin_panic_handler::{{closure}}",
    ),
    (
        "library/core/src/panicking.rs",
        "core::panicking::panic_fmt",
    ),
    (
        "library/core/src/option.rs",
        "core::option::Option<T>::unwrap",
    ),
    ("library/std/src/rt.rs", "std::rt::lang_start_internal"),
    (
        "library/core/src/ops/function.rs",
        "core::ops::function::FnOnce::call_once",
    ),
    (
        "library/std/src/sys/backtrace.rs",
        "std::sys::backtrace::__rust_begin_short_backtrace",
    ),
];

const APP_FRAMES: &[(&str, &str)] = &[
    ("src/main.rs", "my_app::main"),
    ("src/config.rs", "my_app::config::load_settings"),
    ("src/sync/mod.rs", "my_app::sync::Syncer::run"),
    ("src/sync/remote.rs", "my_app::sync::remote::fetch_manifest"),
    ("src/db.rs", "my_app::db::Store::open"),
    ("src/cli.rs", "my_app::cli::Args::parse_from_env"),
];

const MESSAGES: &[&str] = &[
    "called `Option::unwrap()` on a `None` value",
    "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
    "index out of bounds: the len is 3 but the index is 7",
    "failed to parse manifest: expected value at line 1 column 1",
    "database is locked",
    "connection reset by peer",
];

const BREADCRUMBS: &[(&str, &str)] = &[
    ("http", "GET https://api.example.com/v1/items?page=2 -> 404"),
    ("http", "POST https://api.example.com/v1/sync -> 200"),
    ("log", "loaded 42 items from cache in 13ms"),
    ("log", "retrying request (attempt 2 of 5)"),
    ("navigation", "screen changed to Settings"),
    ("log", "worker thread 'sync-3' started"),
    ("query", "SELECT id, name FROM items WHERE updated_at > ?1"),
];

struct Machine {
    os: Os,
    user: String,
    home: String,
    sep: char,
    host: String,
}

fn machine(os: Os, user: &str, host: &str) -> Machine {
    let (home, sep) = home_of(os, user);
    Machine {
        os,
        user: user.to_owned(),
        home,
        sep,
        host: host.to_owned(),
    }
}

fn os_context(os: Os, rng: &mut Rng) -> Value {
    match os {
        Os::Linux => json!({
            "type": "os", "name": "Linux", "version": "24.04",
            "kernel_version": format!("6.8.0-{}-generic", 30 + rng.below(20)),
            "distribution_name": "Ubuntu", "distribution_version": "24.04.1 LTS",
        }),
        Os::Wsl => json!({
            "type": "os", "name": "Linux", "version": "22.04",
            "kernel_version": "5.15.153.1-microsoft-standard-WSL2",
            "distribution_name": "Ubuntu", "distribution_version": "22.04.4 LTS",
        }),
        Os::Mac => json!({
            "type": "os", "name": "macOS", "version": "14.5", "build": "23F79",
            "kernel_version": "Darwin Kernel Version 23.5.0",
        }),
        Os::Windows => json!({
            "type": "os", "name": "Windows", "version": "10.0.22631", "build": "22631",
        }),
    }
}

fn frames(m: &Machine, rng: &mut Rng, count: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(count);
    let project = join(&m.home, m.sep, "src/my-app");
    let registry = join(
        &m.home,
        m.sep,
        ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f",
    );
    for i in 0..count {
        let addr = format!(
            "0x{:012x}",
            0x7ff6_0000_0000u64 + (rng.next_u64() & 0xff_ffff)
        );
        let frame = match i % 4 {
            0 | 1 => {
                let (file, function) = *rng.pick(APP_FRAMES);
                let module = function.rsplit_once("::").map_or(function, |(m, _)| m);
                json!({
                    "function": function,
                    "module": module,
                    "filename": file,
                    "abs_path": join(&project, m.sep, file),
                    "lineno": 10 + rng.below(400),
                    "colno": 1 + rng.below(60),
                    "in_app": true,
                    "instruction_addr": addr,
                })
            }
            2 => {
                let (krate, file, function) = *rng.pick(CRATES);
                json!({
                    "function": function,
                    "filename": file,
                    "abs_path": join(&registry, m.sep, &format!("{krate}/{file}")),
                    "package": krate,
                    "lineno": 10 + rng.below(900),
                    "in_app": false,
                    "instruction_addr": addr,
                })
            }
            _ => {
                let (file, function) = *rng.pick(STD_FRAMES);
                json!({
                    "function": function,
                    "filename": file,
                    "abs_path": format!("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/{file}"),
                    "lineno": 10 + rng.below(700),
                    "in_app": false,
                    "instruction_addr": addr,
                })
            }
        };
        out.push(frame);
    }
    out
}

fn base_event(m: &Machine, rng: &mut Rng, frame_count: usize, crumb_count: usize) -> Value {
    let message = *rng.pick(MESSAGES);
    let crumbs: Vec<Value> = (0..crumb_count)
        .map(|i| {
            let (category, text) = *rng.pick(BREADCRUMBS);
            json!({
                "timestamp": 1_726_000_000.0 + i as f64 * 1.5,
                "type": if category == "http" { "http" } else { "default" },
                "category": category,
                "level": "info",
                "message": text,
                "data": {"thread": format!("worker-{}", rng.below(8)), "elapsed_ms": rng.below(500)},
            })
        })
        .collect();
    let arch = if m.os == Os::Mac { "arm64" } else { "x86_64" };
    json!({
        "event_id": rng.hex(32),
        "timestamp": 1_726_000_100.25,
        "platform": "native",
        "level": "fatal",
        "logger": "panic",
        "server_name": m.host,
        "release": format!("my-app@1.4.2+{}", rng.hex(40)),
        "environment": "production",
        "message": {"formatted": format!("thread 'main' panicked at src/main.rs:{}:{}: {message}", 10 + rng.below(90), 5 + rng.below(40))},
        "exception": {"values": [{
            "type": "panic",
            "value": message,
            "mechanism": {"type": "panic", "handled": false},
            "stacktrace": {"frames": frames(m, rng, frame_count)},
        }]},
        "breadcrumbs": {"values": crumbs},
        "contexts": {
            "os": os_context(m.os, rng),
            "rust": {"type": "runtime", "name": "rustc", "version": "1.95.0", "channel": "stable"},
            "device": {"type": "device", "arch": arch, "cpu_description": "AMD Ryzen 7 7840U", "processor_count": 16, "memory_size": 34_359_738_368u64},
            "app": {"type": "app", "app_name": "my-app", "app_version": "1.4.2", "app_start_time": "2024-09-10T20:28:01Z"},
            "trace": {"type": "trace", "trace_id": rng.hex(32), "span_id": rng.hex(16), "status": "internal_error"},
        },
        "tags": {
            "app.version": "1.4.2",
            "os.name": match m.os { Os::Linux | Os::Wsl => "Linux", Os::Mac => "macOS", Os::Windows => "Windows" },
            "request_id": rng.uuid(),
            "feature.sync": "enabled",
        },
        "extra": {
            "config_path": join(&m.home, m.sep, ".config/my-app/config.toml"),
            "cwd": join(&m.home, m.sep, "src/my-app"),
            "items_loaded": 42,
        },
        "sdk": {
            "name": "sentry.rust", "version": "0.49.0",
            "integrations": ["attach-stacktrace", "debug-images", "contexts", "panic", "transaction"],
            "packages": [{"name": "cargo:sentry", "version": "0.49.0"}],
        },
        "debug_meta": {"images": [{
            "type": if m.os == Os::Windows { "pe" } else if m.os == Os::Mac { "macho" } else { "elf" },
            "code_file": join(&m.home, m.sep, "src/my-app/target/release/my-app"),
            "debug_id": rng.uuid(),
            "image_addr": "0x7ff600000000",
            "image_size": 9_437_184,
            "arch": arch,
        }]},
    })
}

/// A realistic event: the running user's machine most of the time, another machine now and
/// then, and a sprinkle of PII in messages and breadcrumbs.
pub fn realistic_event(rng: &mut Rng) -> Value {
    let os = *rng.pick(&ALL_OS);
    let m = if rng.chance(80) {
        machine(os, USER, "alice-laptop")
    } else {
        let user = victim_name(rng);
        machine(os, &user, &format!("ws-{user}-{}", rng.below(99)))
    };
    let frame_count = 12 + rng.below(28);
    let crumb_count = 3 + rng.below(12);
    let mut event = base_event(&m, rng, frame_count, crumb_count);
    if rng.chance(30) {
        let email = format!("{}@example.com", victim_name(rng));
        push_crumb(&mut event, &format!("signed in as {email}"));
    }
    if rng.chance(20) {
        let ip = ipv4(rng);
        push_crumb(&mut event, &format!("connect to {ip}:443 timed out"));
    }
    if rng.chance(10) {
        event["request"] = json!({
            "method": "GET",
            "url": format!("https://api.example.com/v1/items?page=2&token={}", rng.alnum(24)),
            "headers": {"Authorization": format!("Bearer {}", rng.alnum(32)), "User-Agent": "my-app/1.4.2", "Accept": "application/json"},
        });
    }
    event
}

fn push_crumb(event: &mut Value, message: &str) {
    if let Some(values) = event["breadcrumbs"]["values"].as_array_mut() {
        values.push(
            json!({"type": "default", "category": "log", "level": "info", "message": message}),
        );
    }
}

/// The realistic corpus the bench runs on.
pub fn realistic_corpus(count: usize, seed: u64) -> Vec<Value> {
    let mut rng = Rng::new(seed);
    (0..count).map(|_| realistic_event(&mut rng)).collect()
}

const SYLLABLES: &[&str] = &[
    "zor", "quen", "vel", "drak", "mir", "thal", "oss", "bren", "kyl", "var", "nix", "pell",
    "grim", "yva", "lusk", "fenn", "orb", "talv",
];

/// A made-up user name, specific enough to be chased through text.
pub fn victim_name(rng: &mut Rng) -> String {
    let mut name = String::new();
    for _ in 0..3 {
        let syllable: &&str = rng.pick(SYLLABLES);
        name.push_str(syllable);
    }
    name
}

fn ipv4(rng: &mut Rng) -> String {
    format!(
        "{}.{}.{}.{}",
        11 + rng.below(100),
        rng.below(256),
        rng.below(256),
        1 + rng.below(254)
    )
}

fn luhn_complete(prefix: &str) -> String {
    let digits: Vec<u32> = prefix.chars().filter_map(|c| c.to_digit(10)).collect();
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut d = *d;
        if i % 2 == 0 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    format!("{prefix}{}", (10 - sum % 10) % 10)
}

fn iban_de(rng: &mut Rng) -> String {
    let bban = rng.digits(18);
    // Check digits: 98 - (BBAN + "DE00" as digits) mod 97; D=13, E=14.
    let numeric = format!("{bban}131400");
    let rem = numeric.chars().fold(0u64, |acc, c| {
        (acc * 10 + u64::from(c.to_digit(10).unwrap())) % 97
    });
    format!("DE{:02}{bban}", 98 - rem)
}

/// A value planted in an event: the text to embed and the substrings that must not survive.
struct Plant {
    text: String,
    secrets: Vec<String>,
}

/// Every kind of value the leak test plants.
const PLANT_KINDS: usize = 47;

/// A name capitalised: `zorquen` -> `Zorquen`.
fn capitalised(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

fn plant(kind: usize, rng: &mut Rng, victim: &Machine) -> Plant {
    let simple = |text: String| Plant {
        secrets: vec![text.clone()],
        text,
    };
    match kind {
        0 => Plant {
            text: join(&victim.home, victim.sep, "notes/todo.txt"),
            secrets: vec![victim.user.clone()],
        },
        1 => Plant {
            text: format!("user {} is logged in", victim.user.to_uppercase()),
            secrets: vec![victim.user.clone(), victim.user.to_uppercase()],
        },
        2 => Plant {
            text: format!("git@github.com:{}/dotfiles.git", victim.user),
            secrets: vec![victim.user.clone()],
        },
        3 => Plant {
            text: format!("resolved {} in 3ms", victim.host),
            secrets: vec![victim.host.clone()],
        },
        4 => simple(format!(
            "{}.{}@mail.example.org",
            victim.user,
            rng.below(999)
        )),
        5 => simple(ipv4(rng)),
        6 => simple(format!(
            "2001:db8:{}:{}::{}",
            rng.hex(4),
            rng.hex(4),
            rng.hex(3)
        )),
        7 => simple((0..6).map(|_| rng.hex(2)).collect::<Vec<_>>().join(":")),
        8 => simple(luhn_complete(&format!("4{}", rng.digits(14)))),
        9 => simple(iban_de(rng)),
        10 => simple(format!(
            "{}-{:02}-{:04}",
            100 + rng.below(500),
            1 + rng.below(98),
            1 + rng.below(9998)
        )),
        11 => simple(format!("+44 20 7946 {}", rng.digits(4))),
        12 => simple(format!("ghp_{}", rng.alnum(36))),
        13 => simple(format!("AKIA{}", rng.alnum(16).to_uppercase())),
        14 => {
            let jwt = format!(
                "eyJhbGciOiJIUzI1NiJ9.eyJ{}.{}",
                rng.alnum(20),
                rng.alnum(22)
            );
            simple(jwt)
        }
        15 => {
            let token = rng.alnum(28);
            Plant {
                text: format!("Authorization: Bearer {token}"),
                secrets: vec![token],
            }
        }
        16 => {
            let body = rng.alnum(48);
            Plant {
                text: format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"),
                secrets: vec![body],
            }
        }
        17 => {
            let password = format!("pw-{}", rng.alnum(10));
            Plant {
                text: format!("postgres://svc:{password}@db.example.net/app"),
                secrets: vec![password],
            }
        }
        18 => {
            let secret = rng.alnum(20);
            Plant {
                text: format!("https://api.example.com/cb?code=1&api_key={secret}"),
                secrets: vec![secret],
            }
        }
        19 => {
            let secret = format!("hx{}", rng.alnum(9));
            Plant {
                text: format!("password={secret}"),
                secrets: vec![secret],
            }
        }
        20 => {
            let (_, value) = *rng.pick(ENV_SECRETS);
            simple(value.to_owned())
        }
        21 => Plant {
            text: format!("reviewed by {FULL_NAME}"),
            secrets: vec![FULL_NAME.to_owned()],
        },
        22 => Plant {
            text: format!(
                "{USER} on {}",
                HOSTNAME.split('.').next().unwrap_or(HOSTNAME)
            ),
            secrets: vec![USER.to_owned(), "alice-laptop".to_owned()],
        },
        23 => Plant {
            text: format!("HOSTNAME={}", victim.host),
            secrets: vec![victim.host.clone()],
        },
        24 => Plant {
            text: format!("\\\\{}\\builds\\latest.zip", victim.host),
            secrets: vec![victim.host.clone()],
        },
        25 => {
            let token = format!("xoxb-{}-{}", rng.digits(12), rng.alnum(24));
            simple(token)
        }
        // UNC shares of user folders, of a user met nowhere else.
        26 => {
            let other = victim_name(rng);
            let host = format!("{}-nas", victim_name(rng));
            Plant {
                text: format!("\\\\{host}\\c$\\Users\\{other}\\report.docx"),
                secrets: vec![other, host],
            }
        }
        27 => {
            let other = victim_name(rng);
            let host = format!("{}-fs", victim_name(rng));
            Plant {
                text: format!("//{host}/Users/{other}/report.docx"),
                secrets: vec![other, host],
            }
        }
        // Percent-encoded user names.
        28 => {
            let other = victim_name(rng);
            Plant {
                text: format!("file:///home/{other}%C3%B6rg/x.rs"),
                secrets: vec![other],
            }
        }
        29 => {
            let other = victim_name(rng);
            Plant {
                text: format!("file:///C:/Users/O%27{}/x", capitalised(&other)),
                secrets: vec![other],
            }
        }
        30 => {
            let other = victim_name(rng);
            Plant {
                text: format!("%2Fhome%2F{other}%20smith%2Fx"),
                secrets: vec![other],
            }
        }
        // Windows user names with spaces (at the end of a path) and apostrophes.
        31 => {
            let (first, last) = (victim_name(rng), victim_name(rng));
            Plant {
                text: format!(
                    "cwd C:\\Users\\{} {}",
                    capitalised(&first),
                    capitalised(&last)
                ),
                secrets: vec![first, last],
            }
        }
        32 => {
            let other = victim_name(rng);
            Plant {
                text: format!("C:\\Users\\O'{}\\x", capitalised(&other)),
                secrets: vec![other],
            }
        }
        // Quoted secrets with spaces, and header values.
        33 => {
            let words = [rng.alnum(7), rng.alnum(8), rng.alnum(9)];
            Plant {
                text: format!("body {{\"password\": \"{}\"}} sent", words.join(" ")),
                secrets: words.to_vec(),
            }
        }
        34 => {
            let token = rng.alnum(20).to_lowercase();
            Plant {
                text: format!("Authorization: Token {token}"),
                secrets: vec![token],
            }
        }
        35 => {
            let (a, b) = (rng.alnum(12), rng.alnum(12));
            Plant {
                text: format!("headers {{\"Cookie\": \"session={a} {b}\"}}"),
                secrets: vec![a, b],
            }
        }
        // `key: value` prose with a secret's name.
        36 => {
            let value = format!("{}{}", victim_name(rng), victim_name(rng));
            Plant {
                text: format!("token: {value}"),
                secrets: vec![value],
            }
        }
        // URL credentials without a user, and JSON-escaped.
        37 => {
            let password = format!("pw{}", rng.alnum(10));
            Plant {
                text: format!("redis://:{password}@cache:6379"),
                secrets: vec![password],
            }
        }
        38 => {
            let password = format!("pw{}", rng.alnum(10));
            Plant {
                text: format!("https:\\/\\/svc:{password}@api.example.net\\/v1"),
                secrets: vec![password],
            }
        }
        // Deny-listed query parameters, PGP keys, plain-word environment secrets.
        39 => {
            let secret = rng.alnum(14);
            let name = *rng.pick(&["pwd", "pass", "jwt", "bearer"]);
            Plant {
                text: format!("https://example.com/login?user=x&{name}={secret}"),
                secrets: vec![secret],
            }
        }
        40 => {
            let body = rng.alnum(48);
            Plant {
                text: format!(
                    "-----BEGIN PGP PRIVATE KEY BLOCK-----\n{body}\n-----END PGP PRIVATE KEY BLOCK-----"
                ),
                secrets: vec![body],
            }
        }
        // Homes that do not start the path: on a volume, a mount point, a network file
        // system, a remote host; and the host of a `file://` share.
        41 => {
            let other = victim_name(rng);
            let root = *rng.pick(&[
                "/Volumes/Backup",
                "/Volumes/Macintosh HD",
                "/System/Volumes/Data",
            ]);
            Plant {
                text: format!("{root}/Users/{other}/Documents/report.pdf"),
                secrets: vec![other],
            }
        }
        42 => {
            let other = victim_name(rng);
            let root = *rng.pick(&["/mnt", "/nfs", "/net/fs01", "/srv", "/media/backup"]);
            Plant {
                text: format!("{root}/home/{other}/src/app/main.rs"),
                secrets: vec![other],
            }
        }
        43 => {
            let other = victim_name(rng);
            let url = *rng.pick(&[
                "sftp://files.example.net/home",
                "ssh://build.example.net/Users",
                "file://localhost/home",
            ]);
            Plant {
                text: format!("{url}/{other}/x.rs"),
                secrets: vec![other],
            }
        }
        44 => {
            let other = victim_name(rng);
            let host = format!("{}-nas", victim_name(rng));
            Plant {
                text: format!("file://{host}/Users/{other}/notes.txt"),
                secrets: vec![other, host],
            }
        }
        45 => {
            // The user of a mounted home is learned: it goes bare too.
            let other = victim_name(rng);
            Plant {
                text: format!("/Volumes/Backup/Users/{other}/x.rs restored for {other}"),
                secrets: vec![other],
            }
        }
        _ => {
            // A domain profile folder teaches the user name before the dot.
            let other = victim_name(rng);
            Plant {
                text: format!("C:\\Users\\{other}.CORP\\x by {other}; smtp sunshine"),
                secrets: vec![other, "sunshine".to_owned()],
            }
        }
    }
}

/// A generated event with PII planted in it.
pub struct Planted {
    pub event: Value,
    /// Substrings that must not appear anywhere in the scrubbed event.
    pub secrets: Vec<String>,
    /// Substrings that must still appear in the scrubbed event.
    pub keep: Vec<String>,
}

/// Where a planted value goes.
const SLOTS: &[&str] = &[
    "message",
    "exception.type",
    "exception.value",
    "frame.abs_path",
    "frame.filename",
    "frame.module",
    "frame.function",
    "frame.vars",
    "breadcrumb.message",
    "breadcrumb.data",
    "tags",
    "extra",
    "contexts",
    "user",
    "request.url",
    "request.headers",
    "request.data",
    "map key",
    "deny key",
];

/// Event `index` of the leak corpus: every slot gets a planted value, the kinds rotating so
/// that the corpus covers every (slot, kind) pair.
pub fn planted_event(index: usize, rng: &mut Rng) -> Planted {
    let os = ALL_OS[index % 4];
    let victim_user = victim_name(rng);
    let victim_host = format!("{}-box{}", victim_name(rng), rng.below(90) + 10);
    let victim = machine(os, &victim_user, &victim_host);
    // The event comes from the victim's machine: their home is in the frames and their
    // hostname in `server_name`, which is how the scrubber learns who they are.
    let mut event = base_event(&victim, rng, 8, 4);
    let mut secrets = vec![victim_user.clone(), victim_host.clone()];
    // Frames 1 to 3 are fixed so that the must-keep list can name them.
    let frames = &mut event["exception"]["values"][0]["stacktrace"]["frames"];
    frames[1] = json!({
        "function": "my_app::config::load_settings",
        "module": "my_app::config",
        "filename": "src/config.rs",
        "abs_path": join(&victim.home, victim.sep, "src/my-app/src/config.rs"),
        "lineno": 87, "colno": 14, "in_app": true,
    });
    frames[2] = json!({
        "function": "serde::de::Deserialize::deserialize",
        "filename": "src/de/mod.rs",
        "abs_path": join(&victim.home, victim.sep, ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de/mod.rs"),
        "package": "serde-1.0.219",
        "lineno": 311, "in_app": false,
    });
    frames[3] = json!({
        "function": "core::panicking::panic_fmt",
        "filename": "library/core/src/panicking.rs",
        "abs_path": "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs",
        "lineno": 74, "in_app": false,
    });
    push_crumb(
        &mut event,
        "GET https://api.example.com/v1/items?page=2 -> 404",
    );
    let mut keep: Vec<String> = [
        "my_app::config::load_settings",
        "my_app::config",
        "src/config.rs",
        "serde::de::Deserialize::deserialize",
        "serde-1.0.219",
        "core::panicking::panic_fmt",
        "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/panicking.rs",
        "GET https://api.example.com/v1/items?page=2 -> 404",
        "1.95.0",
        "my-app@1.4.2+",
        "sentry.rust",
        "production",
    ]
    .map(str::to_owned)
    .to_vec();
    // What follows a home stays, in the OS's own spelling.
    for rest in [
        "src/my-app/src/config.rs",
        ".cargo/registry/src/index.crates.io-1949cf8c6b5b557f/serde-1.0.219/src/de/mod.rs",
    ] {
        keep.push(join("", victim.sep, rest));
    }
    for key in ["event_id", "release"] {
        if let Some(value) = event[key].as_str() {
            keep.push(value.rsplit('+').next().unwrap_or(value).to_owned());
        }
    }
    for pointer in [
        "/tags/request_id",
        "/debug_meta/images/0/debug_id",
        "/contexts/trace/trace_id",
        "/contexts/os/version",
    ] {
        if let Some(value) = event.pointer(pointer).and_then(Value::as_str) {
            keep.push(value.to_owned());
        }
    }
    keep.push(
        match os {
            Os::Linux => "24.04.1 LTS",
            Os::Wsl => "5.15.153.1-microsoft-standard-WSL2",
            Os::Mac => "Darwin Kernel Version 23.5.0",
            Os::Windows => "10.0.22631",
        }
        .to_owned(),
    );
    // A short, common hostname in `server_name` goes whole; the victim's is then learned
    // from `contexts.device.name`.
    if index.is_multiple_of(5) {
        event["server_name"] = json!(*rng.pick(&["raspberrypi", "vm", "ubuntu"]));
        event["contexts"]["device"]["name"] = json!(victim.host);
    }
    // A learned user `max` spares Rust paths, snake_case words and file names, and web routes
    // teach no user.
    if index.is_multiple_of(3) {
        event["extra"]["profile"] = json!("/home/max/.profile");
        push_crumb(
            &mut event,
            "called core::cmp::max_by on usize::max_value in src/max.rs",
        );
        push_crumb(&mut event, "GET /home/dashboard -> 200");
        push_crumb(&mut event, "GET /api/home/dashboard/widgets -> 200");
        push_crumb(&mut event, "rendered dashboard widgets");
        keep.extend(
            [
                "called core::cmp::max_by on usize::max_value in src/max.rs",
                "GET /api/home/dashboard/widgets -> 200",
                "rendered dashboard widgets",
            ]
            .map(str::to_owned),
        );
    }
    event["request"] = json!({"method": "POST", "headers": {"Accept": "application/json"}});
    event["user"] = json!({"id": rng.uuid()});
    if let Some(id) = event["user"]["id"].as_str() {
        keep.push(id.to_owned());
    }
    for (slot_index, slot) in SLOTS.iter().enumerate() {
        let kind = (index + slot_index * 7) % PLANT_KINDS;
        let planted = plant(kind, rng, &victim);
        secrets.extend(planted.secrets.iter().cloned());
        place(&mut event, slot, &planted.text, rng, &mut keep);
    }
    secrets.sort();
    secrets.dedup();
    Planted {
        event,
        secrets,
        keep,
    }
}

fn place(event: &mut Value, slot: &str, text: &str, rng: &mut Rng, keep: &mut Vec<String>) {
    let frame = &mut event["exception"]["values"][0]["stacktrace"]["frames"][0];
    match slot {
        "message" => {
            event["message"]["formatted"] =
                json!(format!("failed to open config: {text} (os error 2)"));
            keep.push("failed to open config: ".to_owned());
        }
        "exception.type" => {
            event["exception"]["values"][0]["type"] = json!(format!("ConfigError({text})"))
        }
        "exception.value" => {
            event["exception"]["values"][0]["value"] = json!(format!(
                "No such file or directory: {text}; see docs/errors.md#E0042"
            ));
            keep.push("docs/errors.md#E0042".to_owned());
        }
        "frame.abs_path" => frame["abs_path"] = json!(text),
        "frame.filename" => frame["filename"] = json!(format!("{text}/src/lib.rs")),
        "frame.module" => frame["module"] = json!(format!("my_app::loader[{text}]")),
        "frame.function" => frame["function"] = json!(format!("my_app::load::<{text}>")),
        "frame.vars" => {
            frame["vars"] = json!({"path": text, "attempt": 3, "nested": {"list": [text, "ok"]}});
        }
        "breadcrumb.message" => {
            push_crumb(event, &format!("cache miss for {text} after 120ms"));
            keep.push("after 120ms".to_owned());
        }
        "breadcrumb.data" => {
            if let Some(crumbs) = event["breadcrumbs"]["values"].as_array_mut()
                && let Some(first) = crumbs.first_mut()
            {
                first["data"]["target"] = json!(text);
            }
        }
        "tags" => event["tags"]["last_target"] = json!(text),
        "extra" => event["extra"]["detail"] = json!({"note": text, "list": [1, text, null]}),
        "contexts" => {
            event["contexts"]["runtime_info"] = json!({"type": "runtime_info", "origin": text})
        }
        "user" => event["user"]["display"] = json!(text),
        "request.url" => {
            event["request"]["url"] = json!(format!("https://example.com/open?file={text}"))
        }
        "request.headers" => event["request"]["headers"]["X-Debug-Target"] = json!(text),
        "request.data" => event["request"]["data"] = json!({"payload": text, "count": 2}),
        "map key" => {
            let map = event["extra"].as_object_mut();
            if let Some(map) = map {
                map.insert(text.to_owned(), json!(rng.below(100)));
            }
        }
        _ => {
            // A value under a secret-looking key, whatever it is.
            let key = *rng.pick(&[
                "password",
                "api_key",
                "X-Auth-Token",
                "sessionid",
                "client_secret",
                "pass",
                "pwd",
                "jwt",
                "bearer",
            ]);
            let mut map = Map::new();
            map.insert(key.to_owned(), json!(text));
            event["extra"]["credentials_dump"] = Value::Object(map);
        }
    }
}

/// The leak corpus: `count` events, deterministic.
pub fn planted_corpus(count: usize, seed: u64) -> Vec<Planted> {
    let mut rng = Rng::new(seed);
    (0..count).map(|i| planted_event(i, &mut rng)).collect()
}

/// Every string and key of a value, for searching.
pub fn all_text(value: &Value) -> String {
    let mut out = String::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                for (k, v) in map {
                    out.push_str(k);
                    out.push('\n');
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    out
}
