//! A library that reports its errors and usage without knowing whether the app using it
//! set consentry up.
//!
//! ```sh
//! cargo run --example library            # an app that never calls init: nothing happens, nothing is allocated
//! cargo run --example library -- --init  # an app that calls init (and whose user said yes)
//! ```
//!
//! The library side is the `mylib` module: one call to `consentry::capture_error` and one to
//! `consentry::track`, unconditionally. A counting allocator shows what they cost when the
//! app never called `init`: nothing.
#![allow(clippy::print_stdout, clippy::print_stderr, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a library crate does: report its own errors and usage, and return them as usual.
mod mylib {
    use std::fmt;

    /// A parse error that allocates nothing, so the count below is consentry's alone.
    #[derive(Debug)]
    pub struct ParseError {
        pub line: usize,
    }

    impl fmt::Display for ParseError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "not a number on line {}", self.line)
        }
    }

    impl std::error::Error for ParseError {}

    pub fn parse(input: &str, line: usize) -> Result<i64, ParseError> {
        let result = input.trim().parse::<i64>().map_err(|_| ParseError { line });
        consentry::track("parse", [("ok", result.is_ok())]);
        if let Err(e) = &result {
            consentry::capture_error(e);
        }
        result
    }
}

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--init") {
        return with_init();
    }
    // The app never calls consentry::init.
    let threads_before = threads();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut failures = 0;
    for line in 0..1000 {
        if mylib::parse("twelve", line).is_err() {
            failures += 1;
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let threads_after = threads();
    println!(
        "{failures} errors reported by the library in an app that never called consentry::init:"
    );
    println!("  heap allocations: {allocations}");
    println!(
        "  threads started:  {}",
        threads_after.saturating_sub(threads_before)
    );
    println!("  {}", consentry::current_decision().crash_reason);
    if allocations == 0 && threads_after == threads_before {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn with_init() -> ExitCode {
    let config = consentry::Config::new("library-demo", env!("CARGO_PKG_VERSION"));
    if std::env::args().any(|a| a == "--yes") {
        let _ = consentry::enable(&config, consentry::Scope::All);
    }
    let guard = consentry::init(config.clone());
    println!("{}", consentry::current_decision());
    for line in 0..3 {
        let _ = mylib::parse("twelve", line);
    }
    drop(guard);
    let reports = consentry::pending_reports(&config);
    println!(
        "{} report(s) from the library in the outbox of library-demo",
        reports.len()
    );
    if let Some(r) = reports.last() {
        println!("{}", r.event["exception"]["values"]);
    }
    ExitCode::SUCCESS
}
