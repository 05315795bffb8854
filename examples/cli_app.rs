//! A clap app that mounts the `telemetry` subcommand, reads its DSN from the environment,
//! and uses the opt-out policy with a first-run notice.
//!
//! ```sh
//! cargo run --example cli_app -- run                 # first run: the notice, nothing sent
//! cargo run --example cli_app -- run --fail          # later runs report (to CLI_APP_DSN, if set)
//! cargo run --example cli_app -- telemetry status
//! cargo run --example cli_app -- telemetry preview
//! cargo run --example cli_app -- telemetry log
//! cargo run --example cli_app -- telemetry disable
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use consentry::{Config, Policy};

/// A small tool that does some work and reports its crashes (unless you say no).
#[derive(Parser)]
#[command(name = "cli-app", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Do the work
    Run {
        /// Fail with an error (to see a report)
        #[arg(long)]
        fail: bool,
    },
    /// Crash reports and usage statistics: status, enable, disable, settings, preview, log
    #[command(subcommand)]
    Telemetry(consentry::cli::Command),
}

fn config() -> Config {
    let mut config = Config::new("cli-app", env!("CARGO_PKG_VERSION"))
        .policy(Policy::OptOut)
        .cli_command("cli-app telemetry")
        .privacy_url("https://example.com/cli-app/privacy");
    if let Ok(dsn) = std::env::var("CLI_APP_DSN") {
        config = config.dsn(dsn);
    }
    if let Ok(url) = std::env::var("CLI_APP_USAGE_URL") {
        config = config.usage_sink(consentry::Sink::json(url));
    }
    config
}

// The README's snippet, as is: `init` and `ask` at the top of `main`, the `telemetry`
// subcommand in the match. While `cli-app telemetry ...` runs, `init` starts nothing and
// `ask` asks nothing, so a first `cli-app telemetry disable` prints one line.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = config();
    let _guard = consentry::init(config.clone());
    consentry::ask();
    match cli.command {
        Command::Telemetry(command) => consentry::cli::run(&command, &config),
        Command::Run { fail } => run(fail),
    }
}

fn run(fail: bool) -> ExitCode {
    consentry::track("run", [("fail", fail)]);
    if fail {
        let err = std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "cannot write the report",
        );
        eprintln!("error: {err}");
        consentry::capture_error(&err);
        return ExitCode::FAILURE;
    }
    println!("done");
    ExitCode::SUCCESS
}
