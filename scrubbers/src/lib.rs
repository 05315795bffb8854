//! The PII scrubbing engine behind consentry.
#![deny(missing_docs)]
