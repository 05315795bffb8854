//! consentry's own messages to the user: warnings about its files and settings, printed to
//! stderr at most once per process for each kind of problem.
//!
//! This is the only place in the library that writes to stderr besides the consent prompt,
//! the first-run notice, the panic hook's one line, and debug mode.

use std::collections::HashSet;
use std::sync::Mutex;

static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Keys remembered at most (some embed an app's string, such as a bad event name); past
/// this, further new warnings are not printed, so memory stays bounded.
const MAX_KEYS: usize = 256;

/// Prints `consentry: warning: <message>` once per `key` for the life of the process.
pub(crate) fn warn_once(key: &str, message: impl FnOnce() -> String) {
    let first = match SEEN.lock() {
        Ok(mut seen) => {
            let seen = seen.get_or_insert_with(HashSet::new);
            !seen.contains(key) && seen.len() < MAX_KEYS && seen.insert(key.to_owned())
        }
        // A poisoned lock only means another thread panicked while printing: still print.
        Err(_) => true,
    };
    if first {
        eprint_line(&format!("consentry: warning: {}", message()));
    }
}

/// Writes one line to stderr, ignoring failures (a closed stderr must not break the host).
#[allow(clippy::print_stderr)]
pub(crate) fn eprint_line(line: &str) {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
