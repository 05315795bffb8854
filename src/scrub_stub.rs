//! TEMPORARY stand-in for consentry-scrubbers while it is being written. Not committed.
#![allow(missing_docs, dead_code, clippy::all)]
use serde_json::Value;
#[derive(Debug, Clone, Default)]
pub struct Scrubber;
#[derive(Debug, Clone, Default)]
pub struct ScrubberBuilder;
#[derive(Debug, Clone, PartialEq)]
pub struct RuleConfig;
#[derive(Debug, Clone, PartialEq)]
pub enum Redaction {
    Remove,
    Mask,
    Hash,
    Placeholder(String),
}
#[derive(Debug, Clone, Default)]
pub struct Report;
impl Report {
    pub fn new() -> Self {
        Report
    }
    pub fn merge(&mut self, _o: Report) {}
}
impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("")
    }
}
#[derive(Debug, thiserror::Error)]
#[error("scrub error")]
pub struct ScrubError;
#[derive(Debug, thiserror::Error)]
#[error("build error")]
pub struct BuildError;
impl RuleConfig {
    pub fn key<I: IntoIterator<Item = S>, S: Into<String>>(_n: impl Into<String>, _k: I) -> Self {
        RuleConfig
    }
    pub fn with_redaction(self, _r: Redaction) -> Self {
        self
    }
}
impl Scrubber {
    pub fn builder() -> ScrubberBuilder {
        ScrubberBuilder
    }
    pub fn scrub_value(&self, _v: &mut Value) -> Result<Report, ScrubError> {
        Ok(Report)
    }
    pub fn scrub_text(&self, t: &str) -> Result<(String, Report), ScrubError> {
        Ok((t.to_owned(), Report))
    }
    pub fn hash(&self, v: &str) -> String {
        format!("<hash:{}>", v.len())
    }
}
impl ScrubberBuilder {
    pub fn user(self, _: impl Into<String>) -> Self {
        self
    }
    pub fn full_name(self, _: impl Into<String>) -> Self {
        self
    }
    pub fn hostname(self, _: impl Into<String>) -> Self {
        self
    }
    pub fn home_dir(self, _: impl Into<String>) -> Self {
        self
    }
    pub fn env_vars(self, _: impl IntoIterator<Item = (String, String)>) -> Self {
        self
    }
    pub fn salt(self, _: impl AsRef<[u8]>) -> Self {
        self
    }
    pub fn rule(self, _: RuleConfig) -> Self {
        self
    }
    pub fn disable_rule(self, _: &str) -> Self {
        self
    }
    pub fn build(self) -> Result<Scrubber, BuildError> {
        Ok(Scrubber)
    }
}
