//! Errors of building a scrubber and of scrubbing.

use thiserror::Error;

/// Why a [`Scrubber`](crate::Scrubber) or a [`RulePack`](crate::RulePack) could not be built.
///
/// Every message names the rule (or the pack format) and what is wrong with it.
///
/// ```
/// use consentry_scrubbers::{RuleConfig, Scrubber};
///
/// let err = Scrubber::builder()
///     .rule(RuleConfig::regex("order-id", "ORD-[0-9"))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().starts_with("rule `order-id`: invalid pattern"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A rule pack could not be parsed.
    #[error("invalid {format} rule pack: {message}")]
    Pack {
        /// The pack's format: `toml` or `json`.
        format: &'static str,
        /// What the parser reported.
        message: String,
    },
    /// A rule's regular expression does not compile or exceeds its size limit.
    #[error("rule `{rule}`: invalid pattern: {message}")]
    Pattern {
        /// The rule's name.
        rule: String,
        /// What the regex compiler reported.
        message: String,
    },
    /// A rule is malformed: a missing field, an empty literal list, a bad name.
    #[error("rule `{rule}`: {message}")]
    Rule {
        /// The rule's name (empty if the rule has no name).
        rule: String,
        /// What is wrong with it.
        message: String,
    },
    /// Two rules have the same name.
    #[error("rule `{rule}` is defined twice")]
    Duplicate {
        /// The name used twice.
        rule: String,
    },
    /// [`ScrubberBuilder::disable_rule`](crate::ScrubberBuilder::disable_rule) named a rule
    /// that does not exist.
    #[error("cannot disable unknown rule `{rule}`")]
    UnknownRule {
        /// The unknown name.
        rule: String,
    },
}

/// Why an event or a text could not be scrubbed.
///
/// The caller must drop the event on any error: the engine fails closed, and a value that
/// returned an error may be partly scrubbed only.
///
/// ```
/// use consentry_scrubbers::{ScrubError, Scrubber};
///
/// let scrubber = Scrubber::builder().build()?;
/// let mut event = serde_json::json!({"message": "hello"});
/// match scrubber.scrub_value(&mut event) {
///     Ok(_report) => { /* send the event */ }
///     Err(err @ ScrubError::Unstable { .. }) => { /* drop the event */ let _ = err; }
///     Err(_) => { /* drop the event */ }
/// }
/// # Ok::<(), consentry_scrubbers::BuildError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ScrubError {
    /// The rules kept rewriting a string: scrubbing it again would change it again.
    #[error("scrubbing did not settle at `{path}` after {passes} passes")]
    Unstable {
        /// The field path of the string (array indices shown as `[]`).
        path: String,
        /// How many passes over the string (or walks over the event) were made.
        passes: usize,
    },
    /// A string was longer than [`MAX_STRING_BYTES`](crate::MAX_STRING_BYTES): it is not
    /// scrubbed, and the value must be dropped like any other that failed.
    #[error("string at `{path}` is longer than {limit} bytes")]
    TooLong {
        /// The field path of the string (array indices shown as `[]`).
        path: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// An internal invariant of the engine did not hold.
    #[error("internal scrubber error at `{path}`: {message}")]
    Internal {
        /// The field path where it happened.
        path: String,
        /// What went wrong.
        message: String,
    },
}
