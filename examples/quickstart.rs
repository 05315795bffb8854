//! The main job, with no account and no DSN: consent, a usage event, an error whose messages
//! carry your home path, a panic, and then the scrubbed report exactly as it would be sent,
//! read back from the local outbox.
//!
//! ```sh
//! cargo run --example quickstart            # asks y/N in a terminal
//! cargo run --example quickstart -- --yes   # non-interactive: consent given on the command line
//! ```
//!
//! Run it twice: the second run shows the first run's reports were kept in the outbox.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic,
    clippy::expect_used
)]

use std::fmt;

use consentry::{Config, Scope};

/// An error with a three-link `source()` chain, as real apps produce them: training failed,
/// because the dataset could not be loaded, because of an I/O error.
#[derive(Debug)]
enum AppError {
    Train(Box<AppError>),
    LoadDataset(String, std::io::Error),
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Train(_) => write!(f, "training failed"),
            AppError::LoadDataset(path, _) => write!(f, "cannot load the dataset {path}"),
        }
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AppError::Train(e) => Some(e.as_ref()),
            AppError::LoadDataset(_, e) => Some(e),
        }
    }
}

/// Reads a dataset that does not exist: a real `io::Error`, wrapped twice.
fn load(home: &str) -> Result<Vec<u8>, AppError> {
    let path = format!("{home}/datasets/cats/labels.csv");
    std::fs::read(&path).map_err(|e| {
        let io = std::io::Error::new(e.kind(), format!("{e}: {path}"));
        AppError::Train(Box::new(AppError::LoadDataset(path, io)))
    })
}

fn main() {
    // The command users type to manage this demo's consent is the standalone binary's.
    let config: Config = consentry::app_info!().cli_command("consentry --app consentry");
    let yes = std::env::args().any(|a| a == "--yes");
    let waiting = consentry::pending_reports(&config).len();

    // Non-interactive runs say yes on the command line; a terminal is asked below.
    if yes
        && !consentry::status_on_disk(&config).decision.crash
        && let Err(e) = consentry::enable(&config, Scope::All)
    {
        eprintln!("cannot record consent: {e}");
    }
    let guard = consentry::init(config.clone());
    let decision = consentry::ask(); // prompts only on the first run in a terminal
    println!("{decision}");
    if waiting > 0 {
        println!(
            "{waiting} report(s) from earlier runs are waiting in the outbox (no DSN is configured, so they stay here)."
        );
    }
    if !decision.crash {
        println!("Crash reports are off, so nothing is stored. Run with --yes to try it.");
        return;
    }

    consentry::track("quickstart_run", [("mode", "demo")]);

    let home = std::env::var("HOME").unwrap_or_else(|_| "/home/you".into());
    if let Err(err) = load(&home) {
        eprintln!("error: {err}");
        consentry::capture_error(&err);
    }

    // A crash on a worker thread: the default panic message prints, then consentry's line.
    let worker = std::thread::Builder::new()
        .name("quickstart-worker".into())
        .spawn(move || -> f64 {
            panic!("no learning rate configured in {home}/.config/quickstart.toml")
        })
        .expect("spawn a thread");
    let _ = worker.join();

    consentry::flush(std::time::Duration::from_secs(2));
    let reports = consentry::pending_reports(&config);
    let status = consentry::status_on_disk(&config);
    println!();
    println!(
        "The outbox {} holds {} report(s). The newest ones, scrubbed, condensed for reading (frames outside the app and breadcrumbs left out; `consentry --app consentry show ID` prints one exactly as it would be sent):",
        status
            .outbox_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        reports.len()
    );
    for report in reports.iter().rev().take(2).rev() {
        println!("\n# {}", report.path.display());
        println!(
            "{}",
            serde_json::to_string_pretty(&summary(&report.event)).unwrap_or_default()
        );
    }
    println!(
        "\nNothing left this machine: no DSN is configured. `consentry --app {} status` shows more.",
        config.app_name()
    );
    println!(
        "This demo keeps its settings in {} and its reports in {}: `consentry --app {} disable` deletes the reports and says no; remove both directories to start afresh.",
        status
            .settings_file
            .as_ref()
            .and_then(|f| f.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        status
            .outbox_dir
            .as_ref()
            .and_then(|d| d.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        config.app_name()
    );
    drop(guard);
}

/// The event without the long parts (frames outside the app), for reading.
fn summary(event: &serde_json::Value) -> serde_json::Value {
    let mut event = event.clone();
    if let Some(values) = event["exception"]["values"].as_array_mut() {
        for ex in values {
            if let Some(frames) = ex["stacktrace"]["frames"].as_array() {
                let all = frames.len();
                let own: Vec<serde_json::Value> = frames
                    .iter()
                    .filter(|f| f["in_app"] == true)
                    .cloned()
                    .collect();
                ex["stacktrace"] = serde_json::json!({
                    "frames (in-app only)": own,
                    "frames in all": all,
                });
            }
        }
    }
    if let Some(obj) = event.as_object_mut() {
        obj.remove("breadcrumbs");
        obj.remove("sdk");
    }
    event
}
