//! consentry
#![deny(missing_docs)]
