//! `consentry --app NAME <command>`: inspect and control an app's telemetry from outside the
//! app, and scrub Sentry events. All the work is in the library's `cli` module.

use clap::Parser;

fn main() -> std::process::ExitCode {
    consentry::cli::Standalone::parse().run()
}
