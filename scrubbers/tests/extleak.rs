//! The shared extleak corpus (`../shared/corpora/extleak`, beside the project): other
//! projects' secret and PII test vectors (gitleaks, Presidio, detect-secrets) embedded in
//! Sentry events, scored by the corpus's own harness. Fails if the core tier leaks or
//! over-scrubs more than the levels below; skips with a notice if the corpus or `python3`
//! is absent (CI has both).
//!
//! The harness runs a binary as `BINARY scrub --keep-going`, reading events as JSON lines
//! on stdin; this test's own executable is that binary when its first argument is `scrub`
//! (the engine as `consentry scrub` runs it, without the identity of this machine).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use consentry_scrubbers::Scrubber;

/// The most the core tier may leak and over-scrub, in percent (what the engine reached
/// when this test was written; lower them as it improves).
const MAX_LEAK_PERCENT: f64 = 0.3;
const MAX_OVERSCRUB_PERCENT: f64 = 1.8;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("scrub") {
        return scrub_lines();
    }
    // `cargo test -- --list` and filters from other tests' runs.
    if args.iter().any(|a| a == "--list") {
        println!("extleak: test");
        return ExitCode::SUCCESS;
    }
    if args
        .iter()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"extleak".contains(a.as_str()))
    {
        return ExitCode::SUCCESS;
    }
    run_corpus()
}

/// `scrub --keep-going`: one event per line in, one per line out, `null` for an event that
/// cannot be scrubbed.
fn scrub_lines() -> ExitCode {
    let scrubber = Scrubber::builder()
        .env_vars(std::env::vars())
        .salt(b"extleak")
        .build()
        .unwrap();
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.unwrap();
        if line.trim().is_empty() {
            continue;
        }
        let Ok(mut event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let text = match scrubber.scrub_value(&mut event) {
            Ok(_) => serde_json::to_string(&event).unwrap(),
            Err(_) => "null".to_owned(),
        };
        writeln!(out, "{text}").unwrap();
    }
    out.flush().unwrap();
    ExitCode::SUCCESS
}

fn run_corpus() -> ExitCode {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpora/extleak");
    let harness = corpus.join("harness.py");
    if !harness.is_file() {
        println!(
            "extleak: skipped, no corpus at {} (CI has it)",
            corpus.display()
        );
        return ExitCode::SUCCESS;
    }
    let work = std::env::temp_dir().join(format!("consentry-extleak-test-{}", std::process::id()));
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("python3")
        .arg(&harness)
        .arg("run")
        .arg(&exe)
        .arg("--vectors")
        .arg(corpus.join("vectors"))
        .arg("--work")
        .arg(&work)
        .args(["--reps", "1"])
        .output();
    let output = match output {
        Ok(output) => output,
        Err(err) => {
            println!("extleak: skipped, cannot run python3: {err}");
            return ExitCode::SUCCESS;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    let headline = stdout.lines().rev().find(|l| l.starts_with("leak "));
    let Some((leak, over)) = headline.and_then(parse_headline) else {
        println!("extleak: FAILED, no headline in the harness output");
        return ExitCode::FAILURE;
    };
    let results = work.join("results.jsonl");
    let ok = leak <= MAX_LEAK_PERCENT && over <= MAX_OVERSCRUB_PERCENT;
    if ok {
        let _ = std::fs::remove_dir_all(&work);
        println!(
            "extleak: ok, leak {leak:.2}% <= {MAX_LEAK_PERCENT}%, over-scrub {over:.2}% <= {MAX_OVERSCRUB_PERCENT}%"
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "extleak: FAILED, leak {leak:.2}% (at most {MAX_LEAK_PERCENT}%), over-scrub {over:.2}% (at most {MAX_OVERSCRUB_PERCENT}%); every case is in {}",
            results.display()
        );
        ExitCode::FAILURE
    }
}

/// `leak X% (n/N) overscrub Y% (m/M)` -> (100 n/N, 100 m/M).
fn parse_headline(line: &str) -> Option<(f64, f64)> {
    let mut ratios = line.split('(').skip(1).filter_map(|part| {
        let (n, rest) = part.split_once('/')?;
        let d = rest.split(')').next()?;
        let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
        Some(if d > 0.0 { 100.0 * n / d } else { 0.0 })
    });
    Some((ratios.next()?, ratios.next()?))
}
